"""What every step shares: the run directory (its :class:`RunLayout`), the resolved config, the
device, the datasets and the log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .. import distributed
from ..amp import autocast_dtype, dtype_name
from ..config import BackboneConfig, PipelineConfig, config_to_yaml
from ..data.demo import demo_dataset_complete, generate_demo_dataset
from ..data.voc import VocDataset
from ..engine.device import resolve_device
from ..errors import WsssError
from ..io import atomic_path, read_json, save_json
from ..names import check_name
from .layout import RunLayout, upgrade_legacy_layout
from .provenance import run_info

log = logging.getLogger("wsss")


@dataclass
class RunContext:
    """A run directory with its resolved config; ``layout`` names every path in it."""

    run_dir: Path
    config: PipelineConfig
    progress: bool = True
    device: torch.device = field(init=False)
    # config.yaml and run_info.json are written (once) when the command has done its first unit
    # of work (a training step) or finished, so a command that fails on its inputs or settings
    # (a mistyped --set data.root, a seed out of range) leaves the run's record as it was
    record_config: bool = field(default=False, init=False)
    layout: RunLayout = field(init=False)
    # the saliency cue's model when the run trained or reused it (saliency.checkpoint: train)
    saliency_model: Optional[Path] = field(default=None, init=False)
    # `wsss run --plan`: the plan the stage clock fills instead of running stages (wsss.run.plan)
    plan: Optional[object] = field(default=None, init=False)
    # `wsss run`: the stage clock's estimate of the run (wsss.run.clock)
    clock: Optional[object] = field(default=None, init=False)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.layout = RunLayout(self.run_dir)
        # under torchrun on CUDA: this process's GPU (after the CLI joined the process group)
        self.device = resolve_device(self.config.device)
        if distributed.is_distributed() and self.device.type == "cuda":
            self.device = torch.device("cuda", distributed.local_rank())
        self.progress = self.progress and distributed.is_main()

    def train_options(self) -> dict:
        """The run-wide TrainJob settings every training step passes on: device, seed, loader
        workers, progress bar, AMP, SyncBN and checkpoints."""
        cfg = self.config
        return {"device": self.device, "seed": cfg.seed, "num_workers": cfg.num_workers, "progress": self.progress,
                "amp": cfg.amp, "sync_bn": cfg.sync_bn, "channels_last": cfg.channels_last,
                "checkpoint_every": cfg.checkpoint_every,
                "started": self.record}

    def precision_setting(self) -> dict:
        """``{"precision": "bf16"}`` (or fp16) when the config's AMP computes this run's networks
        in reduced precision on its device, else empty: recorded in the settings of per-image
        outputs only when used, so float32 outputs of earlier versions stay valid."""
        amp = autocast_dtype(self.config.amp, self.device)
        return {} if amp is None else {"precision": dtype_name(amp)}

    @property
    def method(self) -> str:
        """The run's method (``pipeline:``): psa, irn or ssnet. A seed-and-walk method keeps its
        settings in the config section of its name and its outputs in folders of its name."""
        return self.config.pipeline

    def pseudo_dir(self, split: str, root: Optional[Path] = None) -> Path:
        """The run's method's pseudo labels of a split (``rw/``, ``rw_crf/`` below it)."""
        return self.layout.pseudo(self.method, self.output_name(split, root))

    def pseudo_label_dir(self, split: str, root: Optional[Path] = None) -> Path:
        """The random walk's pseudo labels of a split that train the segmentation network: after
        the CRF when the method's walk ran it (``psa.crf``, ``irn.crf``)."""
        crf = getattr(self.config, self.method).crf
        return self.layout.pseudo_labels(self.method, self.output_name(split, root), crf)

    def backbone_of(self, section=None) -> BackboneConfig:
        """The backbone a stage builds: its section's own (``seg.backbone``) where set, else the run's."""
        return getattr(section, "backbone", None) or self.config.backbone

    def backbone_weights(self, section=None) -> dict:
        """How a stage that trains starts its backbone: ImageNet weights, or the user's checkpoint."""
        backbone = self.backbone_of(section)
        return {"pretrained": backbone.pretrained, "backbone_checkpoint": backbone.checkpoint}

    def model_defaults(self, class_names: Optional[list[str]] = None) -> dict:
        """What a model file of this run that lacks metadata was built with: the config's backbone
        (and the dataset's classes); see :func:`wsss.models.load_model`."""
        return {"backbone": self.config.backbone.name, "class_names": list(class_names or [])}

    def prepare(self, record_config: bool = True) -> None:
        """Create the run directory and its log (rank 0; the others wait). With ``record_config``
        the resolved config and run info are written once the command has done work
        (:meth:`record`); evaluation commands pass False and never rewrite them."""
        self.record_config = record_config
        if distributed.is_main():
            self._prepare_files()
        distributed.barrier()

    def _prepare_files(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise WsssError(f"{self.run_dir}: run directory is not writable ({exc}); choose another --run-dir") from None
        add_file_logging(self.layout.log)
        upgrade_legacy_layout(self.run_dir)
        if self.config.data.demo is not None:
            self.data_root()  # generated here, once, before other ranks read it

    def record(self) -> None:
        """Write the resolved config and run info (rank 0, once, when :meth:`prepare` asked for it)."""
        if not self.record_config or not distributed.is_main():
            return
        self.record_config = False
        with atomic_path(self.layout.config) as tmp:
            tmp.write_text(config_to_yaml(self.config))
        save_json(self.layout.run_info, run_info(self.config.seed, self.device))

    def data_root(self) -> Path:
        """The dataset root; generates the demo dataset there first when the config asks for it."""
        data = self.config.data
        if data.demo is not None and not demo_dataset_complete(data.root):
            log.info("generating the demo dataset in %s", data.root)
            generate_demo_dataset(data.root, data.demo.num_train, data.demo.num_val, data.demo.image_size, data.demo.seed)
        return Path(data.root)

    def dataset(self, split: str, root: Optional[Path] = None, require_masks: bool = False) -> VocDataset:
        root = Path(root) if root is not None else self.data_root()
        return VocDataset(root, split, labels=self.config.data.labels, require_masks=require_masks)

    def output_name(self, split: str, root: Optional[Path]) -> str:
        """Folder name of a split's outputs; a foreign dataset root gets its own prefix."""
        check_name(split, "split name", "--split", "name a file of ImageSets/Segmentation (no folders)")
        if root is None or Path(root).resolve() == Path(self.config.data.root).resolve():
            return split
        return f"{Path(root).resolve().name}-{split}"

    def update_summary(self, key: str, value) -> None:
        """Set ``key`` of summary.json to ``value``; None removes the key (a stage whose outputs
        are gone must not keep showing their score)."""
        if not distributed.is_main():
            return
        path = self.layout.summary
        summary = self.summary()
        if value is None:
            if key not in summary:
                return
            del summary[key]
        else:
            summary[key] = value
        save_json(path, summary)

    def forget_scores(self, kind: str) -> None:
        """Drop summary.json's ``<kind>/...`` scores: the model they scored is being trained anew,
        and a split scored on another data root (or not scorable now) must not keep its old score."""
        for key in [key for key in self.summary() if key.startswith(f"{kind}/")]:
            self.update_summary(key, None)

    def summary(self) -> dict:
        """summary.json's scores; a damaged one is set aside with a warning (the stages' eval
        files hold the same scores, and the next stage to finish writes it anew)."""
        try:
            summary = read_json(self.layout.summary, {})
        except WsssError as exc:
            log.warning("%s; starting it anew", exc)
            return {}
        return summary if isinstance(summary, dict) else {}


def add_file_logging(path: Path) -> None:
    logger = logging.getLogger("wsss")
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == path.resolve():
            return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)


def required_model(checkpoint: Optional[Path], default: Path, what: str, command: str) -> Path:
    """The model file a stage reads: ``checkpoint`` if given, else the run's own; must exist."""
    path = Path(checkpoint) if checkpoint else default
    if not path.exists():
        raise WsssError(f"{path}: {what} not found; run `wsss {command}` first or pass --checkpoint")
    return path

