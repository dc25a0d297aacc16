import re
from pathlib import Path

import pytest

from wsss.config import TRAIN_SALIENCY, load_config
from wsss.errors import WsssError


def config_file(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    path = config_file(tmp_path, "name: x\ncam:\n  epochs: 3\n")
    cfg = load_config(path, ["cam.epochs=5", "cam.scales=[1.0, 2.0]", "cam.flip=false"])
    assert cfg.cam.epochs == 5 and cfg.cam.scales == [1.0, 2.0] and cfg.cam.flip is False
    assert cfg.name == "x"


def test_unknown_key_is_named(tmp_path):
    path = config_file(tmp_path, "cam:\n  epochz: 3\n")
    with pytest.raises(WsssError, match=r"cam\.epochz: unknown key"):
        load_config(path)


def test_bad_value_is_named(tmp_path):
    path = config_file(tmp_path, "cam:\n  epochs: many\n")
    with pytest.raises(WsssError, match=r"cam\.epochs"):
        load_config(path)
    with pytest.raises(WsssError, match="output_stride"):
        load_config(None, ["cam.output_stride=12"])
    with pytest.raises(WsssError, match="KEY=VALUE"):
        load_config(None, ["cam.epochs"])


def test_missing_file():
    with pytest.raises(WsssError, match="not found"):
        load_config("/nonexistent/config.yaml")


@pytest.mark.parametrize("name", ["demo", "msrc", "voc12"])
def test_shipped_configs_validate(name):
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
    # the recipe's shape: a saliency model trained as the run's first stage, then a walk on its cue
    assert cfg.saliency.checkpoint == TRAIN_SALIENCY and cfg.saliency.seeds and cfg.saliency.walk_weight > 0
    assert cfg.pipeline in ("psa", "irn") and cfg.psa.crf is True


def test_config_that_is_a_folder_or_not_text(tmp_path):
    with pytest.raises(WsssError, match=rf"^{re.escape(str(tmp_path))}: is a folder; --config takes a YAML file"):
        load_config(tmp_path)
    binary = tmp_path / "c.yaml"
    binary.write_bytes(b"name: \xff\xfe\x00bad")
    with pytest.raises(WsssError, match=r"c\.yaml: not a UTF-8 text file"):
        load_config(binary)


def test_set_errors_blame_the_set_not_the_file(tmp_path):
    path = config_file(tmp_path, "cam:\n  epochs: 3\n")
    with pytest.raises(WsssError, match=r"^--set cam\.epochs=many: cam\.epochs: Input should be a valid integer"):
        load_config(path, ["cam.epochs=many"])
    with pytest.raises(WsssError, match=r"^--set cam=\{epochz: 2\}: cam\.epochz: unknown key"):
        load_config(path, ["cam={epochz: 2}"])
    config_file(tmp_path, "cam:\n  epochs: -1\n")
    with pytest.raises(WsssError) as err:  # one problem from the file, one from the command line
        load_config(path, ["device=tpu"])
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid config:"
    assert any(line.strip().startswith(f"{path}: cam.epochs:") for line in lines)
    assert any(line.strip().startswith("--set device=tpu: device: Value error, device must be auto, cpu, cuda")
               for line in lines)


def test_set_fills_an_optional_section_left_at_null(tmp_path):
    """A recorded config writes an unset seg.backbone as null; --set seg.backbone.name starts it
    from its defaults, and the run's own backbone stays that of every other stage."""
    path = config_file(tmp_path, "backbone:\n  name: efficientnet_lite0\nseg:\n  backbone: null\n")
    assert load_config(path).seg.backbone is None
    cfg = load_config(path, ["seg.backbone.name=efficientnet_lite2"])
    assert cfg.seg.backbone.name == "efficientnet_lite2" and cfg.seg.backbone.pretrained
    assert cfg.backbone.name == "efficientnet_lite0"
    with pytest.raises(WsssError, match=r"^--set 'backbone\.name\.x=1': name is not a section"):
        load_config(path, ["backbone.name.x=1"])


def test_ssnet_pipeline_refuses_the_saliency_only_network(tmp_path):
    path = config_file(tmp_path, "pipeline: ssnet\n")
    with pytest.raises(WsssError) as err:
        load_config(path, ["ssnet.cls_weight=0"])
    assert str(err.value) == (f"{path}: pipeline ssnet needs ssnet.cls_weight > 0: at 0 its stage 1 is the "
                              "saliency-only network, which learns no class to segment")


def test_psa_crf_auto_follows_the_saliency_cue():
    """psa.crf: auto is the CRF with the saliency cue only, settled when the config is read (as
    configs/msrc.yaml ships it), and recorded as the plain value the stages read."""
    shipped = load_config(Path(__file__).resolve().parents[1] / "configs" / "msrc.yaml")
    assert shipped.saliency.used and shipped.psa.crf is True
    without = load_config(Path(__file__).resolve().parents[1] / "configs" / "msrc.yaml",
                          ["saliency.seeds=false", "saliency.walk_weight=0"])
    assert without.psa.crf is False
    assert load_config(None, ["psa.crf=auto"]).psa.crf is False  # the default config has no cue
    assert load_config(None, ["psa.crf=true"]).psa.crf is True
