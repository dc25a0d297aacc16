"""Typed configuration: one YAML file per pipeline, command-line overrides, validation.

A config is a tree of pydantic models. Unknown keys and values of the wrong type are
rejected with a message that names the dotted key (``cam.epochs``) and the problem.
Overrides use the same dotted keys: ``--set cam.epochs=5 --set cam.scales=[1.0,2.0]``;
the value is parsed as YAML, so numbers, lists and booleans need no quoting.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import WsssError
from .names import name_problem

log = logging.getLogger("wsss")

# Inference shrinks images with a longer side first and writes its outputs at the image's size.
# A 6000x4000 photo took 8.4 GB in predict and 16.5 GB to over 22 GB in make-cam at full size;
# with these defaults 0.8 GB and 0.7-1.2 GB (scales up to 2) (docs/notes/benchmarks-history.md, large photos).
DEFAULT_MAX_SIDE = 1024  # predict --max-side, wsss.Predictor
DEFAULT_CAM_MAX_SIDE = 640  # cam.max_side: the network sees it times the largest of cam.scales


MAX_SCALE = 4.0
"""Largest image scale of a multi-scale inference: 4x a 1024-px side is already 16 Mpx per pass."""

MAX_SEED = 2**32 - 1
"""Seeds are 0 .. 2^32 - 1 (what numpy's and torch's generators take)."""

MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few kB; a larger "config" is another file (or a device that never ends)."""

MAX_WALK_STEPS = 4096
"""Most random-walk steps: PSA and IRN use 256; the walk converges long before 4096."""


def _positive_scales(value: list[float]) -> list[float]:
    if not value or any(not 0 < s <= MAX_SCALE for s in value):
        raise ValueError(f"scales must be a non-empty list of numbers in (0, {MAX_SCALE:g}]")
    return value


Scales = Annotated[list[float], AfterValidator(_positive_scales)]
"""Image scales of a multi-scale inference: a non-empty list of numbers in (0, MAX_SCALE]."""


def _at_most_the_cores(value: int) -> int:
    """Worker processes: 0 means one per core; more than the cores only queue, so a larger
    number is capped at the core count (a config written on a bigger machine still runs)."""
    cores = os.cpu_count() or 1
    if value > cores:
        logging.getLogger("wsss").warning("workers: %d asked for, this machine has %d cores; using %d", value, cores, cores)
        return cores
    return value


def _file_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"{problem}; a name here becomes a folder name, so no path")
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
"""A name that becomes one file or folder name (a split, a run's name): no separators, no ``..``."""

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Workers = Annotated[int, Field(ge=0), AfterValidator(_at_most_the_cores)]
WalkSteps = Annotated[int, Field(ge=0, le=MAX_WALK_STEPS)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
"""A fixed threshold on scores in [0, 1]: 0 and 1 would take every pixel or none."""


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DemoDataConfig(Section):
    """Settings of the built-in generated dataset (used when ``data.demo`` is set)."""

    num_train: int = Field(96, ge=4)
    num_val: int = Field(32, ge=2)
    image_size: int = Field(128, ge=32)
    seed: Seed = 0


class DataConfig(Section):
    root: Path = Path("data/demo")
    train_split: FileName = "train"
    val_split: Optional[FileName] = "val"
    # Where image-level labels come from: image_labels.json, cls_labels.npy (AffinityNet repo), a
    # tags file (tags.csv / tags.tsv: `image,tags` rows, wsss.data.tags), derived from the masks,
    # or "auto" (the first of json, npy, tags that exists, then masks).
    labels: Literal["auto", "json", "npy", "tags", "masks"] = "auto"
    # When set, the demo generator writes the dataset to ``root`` if it is not there yet.
    demo: Optional[DemoDataConfig] = None


class BackboneConfig(Section):
    name: str = "efficientnet_lite0"
    pretrained: bool = True
    # A user's own weights for the backbone (a state_dict, or a dict with "model"/"state_dict").
    checkpoint: Optional[Path] = None


class ThresholdSweep(Section):
    start: float = Field(0.05, ge=0.0, le=1.0)
    stop: float = Field(0.95, ge=0.0, le=1.0)
    step: float = Field(0.05, gt=0.0, le=1.0)

    def values(self) -> list[float]:
        count = int(round((self.stop - self.start) / self.step)) + 1
        return [round(self.start + i * self.step, 6) for i in range(max(count, 1))]


class OptimConfig(Section):
    """How a training stage optimises (SGD with poly decay, new layers at a higher rate)."""

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    head_lr_mult: float = Field(10.0, gt=0)
    poly_power: float = Field(0.9, ge=0)
    freeze_bn: bool = False


class AugmentConfig(Section):
    """How a training stage augments its crops: random rescale of the long side, flip, colour
    jitter, crop (wsss.data.transforms.JointAugment)."""

    resize_long: tuple[int, int] = (256, 448)
    crop_size: int = Field(320, ge=16)
    color_jitter: float = Field(0.3, ge=0, le=1)

    @field_validator("resize_long")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1] or value[0] < 8:
            raise ValueError("resize_long must be [low, high] with 8 <= low <= high")
        return value


class TrainStageConfig(OptimConfig, AugmentConfig):
    """A training stage's settings: its optimisation and its augmentation (one flat YAML section)."""


class CamConfig(TrainStageConfig):
    output_stride: Literal[8, 16, 32] = 16
    scales: Scales = Field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    flip: bool = True
    eval_splits: list[str] = Field(default_factory=lambda: ["train"])
    thresholds: ThresholdSweep = Field(default_factory=ThresholdSweep)
    # make-cam worker processes on CPU (0 = one per core); under torchrun each rank takes a shard
    workers: Workers = 1
    # make-cam shrinks images with a longer side to it first (the CAMs are upsampled back to the
    # image's size): bounds memory; VOC, COCO and MSRC images are smaller. null = as they are.
    max_side: Optional[int] = Field(DEFAULT_CAM_MAX_SIDE, ge=16)
    # The background threshold t* that every `auto` setting downstream derives its own from (seeds,
    # the walk's background, the saliency cue's power), found without masks (wsss.cues.cam_threshold):
    # auto (= evidence: the largest threshold whose region keeps 90% of the classifier's score),
    # otsu (Otsu's threshold of the train CAMs' max values), a number, or masks: eval-cam's best
    # against the train masks, a named opt-in for ablations that needs masks of the train split.
    bg_threshold: Union[Literal["auto", "evidence", "otsu", "masks"], Fraction] = "auto"


class CrfConfig(Section):
    """Dense CRF (Kraehenbuehl & Koltun 2011) with PSA's settings as defaults."""

    iterations: int = Field(10, ge=1)
    gaussian_sxy: float = Field(3.0, gt=0)
    gaussian_compat: float = Field(3.0, ge=0)
    bilateral_sxy: float = Field(80.0, gt=0)
    bilateral_srgb: float = Field(13.0, gt=0)
    bilateral_compat: float = Field(10.0, ge=0)
    # The paper's widths were tuned for ~500 px VOC images: scale them with the image size.
    size_relative: bool = True


class SeedConfig(Section):
    """Confident seeds from CAMs (PSA and IRN): with ``seeds: auto`` their thresholds come from
    the CAMs' best background threshold t* on the train split (eval-cam): foreground where
    CAM > t* + fg_margin * (1 - t*), background where CAM < t* * bg_factor; each seed map is
    refined by dense CRF when ``seed_crf``."""

    fg_margin: float = Field(0.3, ge=0, lt=1)
    bg_factor: float = Field(0.5, gt=0, le=1)
    seed_crf: bool = True


WalkFactor = Union[Literal["area"], Annotated[float, Field(gt=0)]]
"""A walk's background threshold as a factor of t*: a number, or ``area`` (wsss.walk.background)."""


class PsaConfig(TrainStageConfig, SeedConfig):
    """PSA (AffinityNet, Ahn & Kwak 2018): seeds from CAMs, AffinityNet trained on the pair labels
    within ``radius`` (PSA train_aff.py), and its random walk T = D^-1 A^beta for ``steps`` steps,
    then the CRF (PSA infer_aff.py)."""

    output_stride: Literal[8, 16, 32] = 16
    radius: int = Field(5, ge=1)
    # Confident seeds. "alpha": background score (1 - max CAM)^alpha with the paper's alphas
    # (low -> confident foreground, high -> confident background). "auto": see SeedConfig (an
    # alpha is the threshold c with (1-c)^alpha = c; the paper's 4/32 are c = 0.28/0.08 around
    # t* ~ 0.2).
    seeds: Literal["alpha", "auto"] = "alpha"
    seed_alphas: tuple[float, float] = (4.0, 32.0)
    epochs: int = Field(8, ge=1)
    lr: float = Field(0.1, gt=0)
    head_lr_mult: float = Field(10.0, gt=0)
    # the walk
    beta: float = Field(8.0, gt=0)
    steps: WalkSteps = 256
    # Background score of the walk's input: (1 - max CAM)^walk_alpha; null -> the alpha of the
    # threshold t* * walk_bg_factor (a number, or area: the factor at which the walk keeps the
    # CAMs' foreground share at t*, no mask read; wsss.walk.background).
    walk_alpha: Optional[float] = 16.0
    walk_bg_factor: WalkFactor = 1.0
    # the dense CRF on the walk's labels (the segmentation network trains on them): true, false,
    # or auto = with the saliency cue only. Tags only on msrc the labels without the cue are
    # better left to the network and its test-time CRF (model 64.9 against 62.6 over two seeds),
    # while with the cue the CRF keeps them 3.8 higher (BENCHMARKS.md)
    crf: Union[bool, Literal["auto"]] = True
    # The walked scores are flat compared with a softmax: p^k (renormalised) before the CRF
    # weights the unary term k times against the pairwise ones (1 = feed them as they are).
    crf_power: float = Field(1.0, gt=0)
    save_scores: bool = False
    eval_splits: list[str] = Field(default_factory=lambda: ["train"])
    # worker processes of make-psa-labels and make-psa-pseudo (dense CRF is CPU-bound); 0 = one per core
    workers: Workers = 1


PSA_WALK_SETTINGS = {"beta", "steps", "walk_alpha", "walk_bg_factor", "crf", "crf_power", "save_scores",
                     "eval_splits", "workers"}
"""What only PSA's walk (and its per-image steps) use: changing it must not retrain AffinityNet."""


class IrnConfig(TrainStageConfig, SeedConfig):
    """IRN (Ahn, Cho & Kwak, CVPR 2019): seeds, the class-boundary network, its random walk.

    Defaults are IRN's (jiwoon-ahn/irn) except the schedule, sized like the other stages here.
    """

    output_stride: Literal[8, 16, 32] = 16
    # Confident seeds: "thresholds" uses seed_fg_threshold / seed_bg_threshold on the CAMs (IRN:
    # 0.30 / 0.05); "auto": see SeedConfig
    seeds: Literal["thresholds", "auto"] = "thresholds"
    seed_fg_threshold: float = Field(0.30, gt=0, lt=1)
    seed_bg_threshold: float = Field(0.05, gt=0, lt=1)
    # pairs of the boundary loss: within this radius on the stride-4 grid (IRN: 10)
    radius: int = Field(10, ge=1)
    # IRN trains the boundary branch alone (frozen backbone) at the base rate: 3 epochs, lr 0.1,
    # weight decay 1e-4
    epochs: int = Field(3, ge=1)
    lr: float = Field(0.1, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    head_lr_mult: float = Field(1.0, gt=0)
    # not IRN's: the backbone's weights learn too (at lr; the branch at lr x head_lr_mult), for a
    # backbone much smaller than IRN's ResNet-50; its BatchNorm statistics stay the pretrained ones
    train_backbone: bool = False
    # the walk: T = D^-1 A^beta with a_ij = 1 - max of B on the segment ij, within walk_radius,
    # t steps (IRN: 5, 10, 2^8 = 256); background: a constant walk_bg_threshold against the
    # max-normalised walked CAMs (IRN: 0.25), or null for t* x walk_bg_factor (auto)
    walk_radius: int = Field(5, ge=1)
    beta: float = Field(10.0, gt=0)
    steps: WalkSteps = 256
    walk_bg_threshold: Optional[float] = Field(0.25, gt=0, lt=1)
    walk_bg_factor: WalkFactor = 1.0  # as psa.walk_bg_factor
    # "max": the walked maps divided by their global maximum before they meet the background
    # score (IRN); "none": left on the CAMs' scale, so an auto background (t*) means what it
    # means for the CAMs themselves
    walk_normalize: Literal["max", "none"] = "max"
    # "constant": IRN's background, a constant score against the walked CAMs; "walked": PSA's
    # input on IRN's affinities: the background score (1 - max CAM)^alpha (alpha from the
    # background threshold, (1 - c)^alpha = c) walked with the CAMs, no (1 - B) factor
    walk_background: Literal["constant", "walked"] = "constant"
    crf: bool = True  # also the pseudo labels after a dense CRF (rw_crf/); train-seg then uses those
    crf_power: float = Field(1.0, gt=0)  # the CRF's unary from scores^power, as psa.crf_power
    eval_splits: list[str] = Field(default_factory=lambda: ["train"])
    # worker processes of make-irn-labels and make-irn-pseudo on CPU; 0 = one per core
    workers: Workers = 1

    @model_validator(mode="after")
    def _ordered_seed_thresholds(self) -> IrnConfig:
        if self.seed_bg_threshold > self.seed_fg_threshold:
            raise ValueError("seed_bg_threshold must not exceed seed_fg_threshold")
        return self


class DeepLabConfig(TrainStageConfig):
    """A DeepLab network on the shared backbone (segmentation, SSNet) and its optimiser."""

    output_stride: Literal[8, 16, 32] = 8
    head: Literal["aspp", "largefov"] = "aspp"
    rates: list[int] = Field(default_factory=lambda: [6, 12, 18, 24])
    # SGD (DeepLab, PSA) or Adam (SSNet's reference code). Adam's per-weight step sizes suit the
    # zero-initialised ASPP head, whose 4 x 9 x 1280 highly correlated inputs cap SGD's stable
    # rate far below what most of its weights could take (short schedules, the demo).
    optimizer: Literal["sgd", "adam"] = "sgd"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    # Sharper borders: a 1x1-reduced skip from the backbone's stride-4 level refines the upsampled
    # logits (a tiny DeepLab-v3+ decoder, wsss.models.segmentation.LowLevelSkip); recorded in
    # model.pt's meta. Left out of the training fingerprint when off (ADDED_TRAINING_KEYS).
    head_skip: bool = False


class SegConfig(DeepLabConfig):
    """The segmentation network trained on pseudo labels (or ground truth, the upper bound)."""

    labels: Literal["pseudo", "gt"] = "pseudo"
    # The segmentation network's own backbone (name, weights); null: the run's `backbone`. The
    # network that learns the final masks may be wider than the CAM, walk and saliency networks.
    backbone: Optional[BackboneConfig] = None
    epochs: int = Field(20, ge=1)
    # Frozen BatchNorm (as DeepLab and PSA): batch statistics of small crops are noisy, and the
    # ImageNet running statistics lag far behind a short fine-tuning. The head (zero-initialised,
    # on normalised features) is stable up to ~0.01; the backbone learns at 0.001, 4x DeepLab-v2's
    # 2.5e-4 because CPU-sized schedules are ~20x shorter than its 20k iterations.
    lr: float = Field(0.001, gt=0)
    head_lr_mult: float = Field(5.0, gt=0)
    freeze_bn: bool = True
    eval_scales: Scales = Field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])
    eval_crf: bool = True


class DemoSaliencyConfig(Section):
    """Settings of the generated saliency dataset (used when ``ssnet.saliency.demo`` is set)."""

    num_images: int = Field(48, ge=4)
    image_size: int = Field(128, ge=32)
    seed: Seed = 0


class SaliencyDataConfig(Section):
    """Class-agnostic saliency masks, DUTS/ECSSD layout: ``images/<id>.jpg`` + ``masks/<id>.png``.

    ``root`` is the set Ls1 trains on (DUTS-TR); ``eval_roots`` are benchmarks (ECSSD, DUTS-TE)
    that are only ever scored, each as a whole, by ``eval-ssnet`` (and so by ``wsss run``).
    """

    root: Path = Path("data/saliency")
    # Held-out part of ``root``, only ever scored, never trained on: of the ids sorted by name,
    # every ``holdout_every``-th one (positions holdout_every-1, 2*holdout_every-1, ...);
    # 0 holds nothing out (trains on all of it, as the paper does with DUTS-TR). The split is
    # also written to <run_dir>/ssnet/saliency_split.json.
    holdout_every: int = Field(5, ge=0)
    # Saliency benchmarks scored whole (max F, MAE, S-measure, mean E-measure at each image's size).
    eval_roots: list[Path] = Field(default_factory=list)
    demo: Optional[DemoSaliencyConfig] = None

    @field_validator("eval_roots")
    @classmethod
    def _distinct_names(cls, value: list[Path]) -> list[Path]:
        # results are keyed by the folder's name (summary.json, eval/*.json)
        names = [Path(p).name for p in value]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"two folders are named {duplicate!r}; their scores would overwrite each other")
        return value


class SsnetStageConfig(DeepLabConfig):
    """One SSNet training stage: the network (backbone + DeepLab head + SAM) and its optimiser."""

    output_stride: Literal[8, 16, 32] = 16
    # The reference code trains SSNet with Adam and a step schedule (lr x gamma every
    # ``step_every`` iterations); sgd + poly is the rest of wsss's default.
    lr_decay: Literal["poly", "step"] = "poly"
    step_every: int = Field(2000, ge=1)
    step_gamma: float = Field(0.1, gt=0, le=1)
    lr: float = Field(0.002, gt=0)
    freeze_bn: bool = True
    # passes over the segmentation set; the saliency-only network's (cls_weight 0) over the saliency set
    epochs: int = Field(10, ge=1)
    # Stage 2 only: start from the stage-1 weights instead of ImageNet (the paper trains a
    # fresh network; starting from stage 1 needs fewer epochs).
    init_from_stage1: bool = False
    # Saliency crops per segmentation crop in a batch (the reference: 1). Ls1 learns from far more
    # images (DUTS-TR: 10553, duts-tr-3k: 3000) than Lc (VOC: 10582, msrc: 355): k > 1 gives it
    # k passes over its set for each pass of the segmentation set, at less than k times the cost.
    saliency_per_sample: int = Field(1, ge=1)


class SsnetConfig(Section):
    """SSNet (Zeng et al., ICCV 2019): joint saliency detection and weakly supervised segmentation."""

    saliency: SaliencyDataConfig = Field(default_factory=SaliencyDataConfig)
    # Weights of the loss terms: L = w_cls Lc + w_sal Ls1 (+ w_seg Ls2 in stage 2). cls_weight 0
    # makes stage 1 a saliency-only network: class-agnostic maps, trained on the saliency set's
    # crops alone, nothing of the dataset read (wsss.ssnet.train.SALIENCY_CLASSES)
    cls_weight: float = Field(1.0, ge=0)
    sal_weight: float = Field(1.0, ge=0)
    seg_weight: float = Field(1.0, ge=0)
    # What the not-salient likelihood of Ls1 is: "background" = H_0 (the reference code's pairing
    # of the background map with S), "complement" = 1 - S (plain binary cross-entropy).
    saliency_negative: Literal["background", "complement"] = "background"
    stage1: SsnetStageConfig = Field(default_factory=SsnetStageConfig)
    stage2: SsnetStageConfig = Field(default_factory=SsnetStageConfig)
    # Pseudo labels for stage 2: stage-1 segmentation restricted to the image's labels, averaged
    # over these scales (+ flip), refined by the dense CRF of the ``crf`` section.
    mine_scales: Scales = Field(default_factory=lambda: [1.0])
    mine_flip: bool = True
    mine_crf: bool = True
    # Weight w of the model's own saliency in the mined labels (0 = the reference's mining):
    # Q_0 = (1 - w) P_0 + w (1 - S), Q_c = (1 - w) P_c + w S P_c / sum_fg P (wsss.ssnet.mine).
    # Saliency decides object against background, the segmentation which labelled class.
    mine_saliency: float = Field(0.0, ge=0, le=1)
    workers: Workers = 1  # processes for mining (forward + CRF per image), 0 = one per core
    eval_scales: Scales = Field(default_factory=lambda: [0.75, 1.0, 1.25])
    eval_crf: bool = True
    # Evaluation (and mining) shrink images whose longer side exceeds this first, so that large
    # photos (640 px COCO) are seen near the training scale; null = as they are. The reference
    # resizes every evaluated image to 256 x 256.
    eval_long_side: Optional[int] = Field(None, ge=16)
    # How saliency maps are made at inference (eval-ssnet, eval-saliency; predict has flags):
    # "map" aggregates S = sum_i v_i H_i at the network's stride and upsamples S; "logits"
    # upsamples the class logits to the input size first, as Ls1 is trained (sharper borders).
    saliency_upsample: Literal["map", "logits"] = "map"
    # a two-label dense CRF on [1 - S, S] (S min-max normalised; DSS's settings, wsss.inference.saliency)
    saliency_crf: bool = False
    # eval-ssnet scores saliency single-scale and, when true, also over eval_scales + flip (on
    # ECSSD's 1000 images ~6x the time of single-scale: 1.1 s/image at stride 8 on one CPU thread)
    saliency_eval_multiscale: bool = True
    # `wsss run` also scores the stage-1 model and mines + scores stage-2 pseudo labels on the
    # train split (when it has masks), to compare the stages: about 19 of SSNet's 63 minutes on
    # msrc, and the final model is the same; on for a study of the stages.
    compare_stages: bool = False

    @property
    def saliency_only(self) -> bool:
        """Stage 1 without Lc (cls_weight 0): the saliency-only network, on the saliency set's crops alone."""
        return self.cls_weight == 0


TRAIN_SALIENCY = "train"
"""``saliency.checkpoint: train``: `wsss run` trains (or reuses) the saliency model itself (wsss.saliency_model)."""


class SaliencyCueConfig(Section):
    """Saliency as the background cue of the random-walk pipelines (PSA, IRN): maps of an SSNet
    (``checkpoint``, stage 1 or 2, trained on DUTS-TR) written per split by make-saliency, then

    * ``seeds``: a CAM foreground seed is kept only where the pixel is salient (S >= s_fg); a pixel
      that is not salient (S <= s_bg) and not CAM foreground is confident background; a salient
      pixel of an image with classes is never confident background;
    * ``walk_weight`` w: the walk's background score b = (1 - w) (1 - max CAM)^alpha + w (1 - S)^gamma
      (IRN with its constant background: (1 - w) c + w (1 - S)^gamma).

    Thresholds from data as ``psa.seeds: auto``, no mask read: s* is Otsu's threshold of the train
    split's maps (``threshold``),
    s_fg = s* + fg_margin (1 - s*), s_bg = s* bg_factor; gamma solves (1 - s*)^gamma = t*, the
    CAMs' background threshold, so that at S = s* the background score is the CAMs' own decision
    value."""

    # an SSNet model.pt (train-ssnet; relative to the working directory), or train: `wsss run`
    # trains SSNet's stage 1 (the ssnet section) into `store`, once for the same settings and data,
    # and every later run of them reuses it (wsss.saliency_model)
    checkpoint: Union[Literal["train"], Path, None] = None  # "train": TRAIN_SALIENCY
    store: Path = Path("runs/saliency")
    scales: Scales = Field(default_factory=lambda: [1.0])
    flip: bool = True
    crf: bool = False      # the two-label CRF on each map (wsss.inference.saliency, DSS's settings)
    upsample: Literal["map", "logits"] = "map"
    long_side: Optional[int] = Field(320, ge=16)  # the network sees images shrunk to it (its training scale)
    workers: Workers = 1
    seeds: bool = False
    # s*: auto (= otsu: Otsu's threshold of the train maps), cams (the threshold whose salient
    # region agrees best with the CAMs' foreground at t*), a number, or masks: make-saliency's best
    # against the train masks, a named opt-in for ablations (wsss.cues.saliency)
    threshold: Union[Literal["auto", "otsu", "cams", "masks"], Fraction] = "auto"
    fg_margin: float = Field(0.0, ge=0, lt=1)
    bg_factor: float = Field(0.5, gt=0, le=1)
    walk_weight: float = Field(0.0, ge=0, le=1)
    walk_power: Optional[float] = Field(None, gt=0)  # gamma; null = from s* and t* (above)

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_source(cls, value):
        # null meant "from the train masks" in run directories made before the mask-free default;
        # such a record now reads as the default, which needs no mask
        return "auto" if value is None else value

    @property
    def used(self) -> bool:
        """Whether a stage reads the maps (seeds or the walk's background)."""
        return self.seeds or self.walk_weight > 0


class PipelineConfig(Section):
    """A pipeline from tagged images to pseudo labels and a segmentation model.

    ``pipeline`` picks the method ``wsss run`` runs (``wsss.methods``): ``psa`` (AffinityNet: cam,
    psa, seg sections), ``irn`` (IRN: cam, irn, seg sections) or ``ssnet`` (SSNet: the ssnet section).
    """

    name: FileName = "run"  # the run directory's default: runs/<name>
    pipeline: Literal["psa", "irn", "ssnet"] = "psa"
    seed: Seed = 0
    device: str = "auto"
    num_workers: Workers = 0
    # Mixed precision (wsss.amp): auto = bf16 (fp16 + loss scaling where bf16 is missing) on CUDA,
    # float32 on CPU; on = also bf16 on CPU; off; or bf16 / fp16 explicitly.
    amp: Literal["auto", "on", "off", "bf16", "fp16"] = "auto"
    # Under torchrun on CUDA: BatchNorm statistics over the global batch (stages without freeze_bn).
    sync_bn: bool = False
    # Train in channels-last (NHWC) memory: oneDNN's faster convolutions on CPU (msrc, 2 cores:
    # train-cam 600 -> 426 s, train-irn 245 -> 181 s, train-seg 245 -> 155 s). Float rounding
    # differs from NCHW, so its models are not byte-identical to NCHW ones; each setting is
    # deterministic. Off by default until more than one run shows equal quality (BENCHMARKS.md).
    channels_last: bool = False
    # Training checkpoints every N steps as well as at each epoch's end (0 = epoch ends only).
    checkpoint_every: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    cam: CamConfig = Field(default_factory=CamConfig)
    crf: CrfConfig = Field(default_factory=CrfConfig)
    psa: PsaConfig = Field(default_factory=PsaConfig)
    irn: IrnConfig = Field(default_factory=IrnConfig)
    seg: SegConfig = Field(default_factory=SegConfig)
    ssnet: SsnetConfig = Field(default_factory=SsnetConfig)
    saliency: SaliencyCueConfig = Field(default_factory=SaliencyCueConfig)

    @model_validator(mode="after")
    def _ssnet_learns_classes(self):
        if self.pipeline == "ssnet" and self.ssnet.saliency_only:
            raise ValueError("pipeline ssnet needs ssnet.cls_weight > 0: at 0 its stage 1 is the saliency-only "
                             "network, which learns no class to segment")
        return self

    @model_validator(mode="after")
    def _resolve_psa_crf(self):
        # psa.crf: auto is settled once, here: every stage then reads a plain true or false
        if self.psa.crf == "auto":
            self.psa.crf = self.saliency.used
        return self

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_on_off(cls, value):
        # YAML reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not valid_device(value):
            raise ValueError(f"device must be {DEVICES}, not {value!r}")
        return value


DEVICES = "auto, cpu, cuda or cuda:N"


def valid_device(name: str) -> bool:
    """A device name wsss accepts: auto, cpu, cuda or cuda:N."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def _override_of(key: str, overrides: list[str]) -> Optional[str]:
    """The last ``--set`` item that set ``key`` or a section above it."""
    for item in reversed(overrides):
        set_key = item.split("=", 1)[0].strip()
        if key == set_key or key.startswith(set_key + "."):
            return item
    return None


def _format_validation_error(exc: ValidationError, source: str, overrides: list[str]) -> str:
    """One line per problem, each blaming what set the value: ``--set KEY=VALUE`` or the config file."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        item = _override_of(key, overrides)
        culprit = f"--set {item}" if item else source
        if err["type"] == "extra_forbidden":
            problem = f"{key}: unknown key; check the spelling against configs/*.yaml"
        elif not err["loc"]:  # a rule across sections: its message names the settings (the input is the whole config)
            problem = err["msg"].removeprefix("Value error, ")
        else:
            problem = f"{key}: {err['msg']} (got {err.get('input')!r})"
        lines.append(f"{culprit}: {problem}")
    return lines[0] if len(lines) == 1 else "invalid config:\n  " + "\n  ".join(lines)


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``tree`` with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    tree = copy.deepcopy(tree)
    for item in overrides:
        if "=" not in item:
            raise WsssError(f"--set {item!r}: expected KEY=VALUE, e.g. --set cam.epochs=5")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise WsssError(f"--set {item!r}: value is not valid YAML ({exc})") from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # an optional section left at null (seg.backbone) is set key by key
                node[part] = {}
            child = node[part]
            if not isinstance(child, dict):
                raise WsssError(f"--set {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return tree


LEGACY_SECTIONS = {"aff": ("psa", {}), "walk": ("psa", {"alpha": "walk_alpha", "bg_factor": "walk_bg_factor"})}
"""Config sections of earlier versions -> (today's section, renamed keys): PSA's settings were
split over ``aff`` and ``walk``; its pipeline was called ``affinity``."""


def upgrade_legacy_keys(tree: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """A config tree of an earlier version (``pipeline: affinity``, ``aff:``, ``walk:``) in today's
    keys, with one deprecation line per old name (``warn``); today's keys win where both are set."""
    tree = dict(tree)
    say = log.warning if warn else log.debug
    if tree.get("pipeline") == "affinity":
        say("pipeline: affinity is now called pipeline: psa; reading it as psa")
        tree["pipeline"] = "psa"
    for old, (new, renamed) in LEGACY_SECTIONS.items():
        if old not in tree:
            continue
        section = tree.pop(old)
        if not isinstance(section, dict):
            raise WsssError(f"{old}: a section of settings was expected (it is now {new}:)")
        target = tree.setdefault(new, {})
        if not isinstance(target, dict):
            raise WsssError(f"{new}: a section of settings was expected")
        moved = {renamed.get(key, key): value for key, value in section.items()}
        say("the %s: section is now part of %s:%s; reading it so", old, new,
            "".join(f", {old}.{k} as {new}.{v}" for k, v in renamed.items() if k in section))
        tree[new] = {**moved, **target}
    return tree


def upgrade_override(item: str) -> str:
    """``--set aff.KEY=V`` / ``walk.KEY=V`` of an earlier version in today's key, with a line saying so."""
    key, sep, value = item.partition("=")
    section, dot, rest = key.strip().partition(".")
    if section not in LEGACY_SECTIONS or not dot:
        return item
    new, renamed = LEGACY_SECTIONS[section]
    upgraded = f"{new}.{renamed.get(rest, rest)}"
    log.warning("--set %s: %s is now %s", item, key.strip(), upgraded)
    return f"{upgraded}{sep}{value}"


def load_config(path: Optional[str | os.PathLike] = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides, validate."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if path.exists() and not path.is_dir() and not path.is_file():
            raise WsssError(f"{path}: not a regular file; --config takes a YAML file, e.g. configs/demo.yaml")
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise WsssError(f"{path}: {path.stat().st_size} bytes, not a config (at most {MAX_CONFIG_BYTES}); "
                            "--config takes a YAML file, e.g. configs/demo.yaml")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise WsssError(f"{path}: config file not found; see configs/ for examples") from None
        except IsADirectoryError:
            raise WsssError(f"{path}: is a folder; --config takes a YAML file, e.g. configs/demo.yaml") from None
        except UnicodeDecodeError:
            raise WsssError(f"{path}: not a UTF-8 text file; --config takes a YAML file, "
                            "e.g. configs/demo.yaml") from None
        except OSError as exc:
            raise WsssError(f"{path}: cannot read config ({exc.strerror or exc})") from None
        except (yaml.YAMLError, RecursionError) as exc:
            raise WsssError(f"{path}: not valid YAML ({str(exc)[:200]})") from None
        if not isinstance(tree, dict):
            raise WsssError(f"{path}: a config must be a mapping of sections")
    overrides = overrides or []
    tree = upgrade_legacy_keys(apply_overrides(upgrade_legacy_keys(tree), [upgrade_override(o) for o in overrides]))
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        raise WsssError(_format_validation_error(exc, source, overrides)) from None


def config_to_yaml(config: BaseModel) -> str:
    """The resolved config as YAML (paths as strings, tuples as lists)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
