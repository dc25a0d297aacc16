"""Methods side by side: no method folder imports another, no lower layer imports a higher one,
and a run directory of the version before PSA's one name still loads and resumes."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from wsss.cli import main
from wsss.config import load_config
from wsss.methods import METHODS

PACKAGE = Path(__file__).resolve().parents[1] / "wsss"
METHOD_FOLDERS = {"cam", "psa", "irn", "ssnet", "segmentation"}
# below the method folders: what they share; none of these may import a method folder or the
# layers above (the registry, the pre-check, the report, the command line)
SHARED = {"cues", "walk", "run", "inference", "models", "engine", "data"}
ABOVE = METHOD_FOLDERS | {"methods", "precheck", "report", "cli", "predict"}


def wsss_imports(path: Path) -> set[str]:
    """The first component below ``wsss`` of every module ``path`` imports (relative or absolute)."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # `from . import x` at the top: x is the module
                    target = [alias.name for alias in node.names][:1]
            elif node.module and node.module.startswith("wsss."):
                target = node.module.split(".")[1:]
            else:
                continue
            found.add(target[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("wsss.")}
    return found


def test_no_method_folder_imports_another():
    for folder in METHOD_FOLDERS:
        for path in (PACKAGE / folder).rglob("*.py"):
            others = wsss_imports(path) & (METHOD_FOLDERS - {folder})
            assert not others, f"{path.relative_to(PACKAGE)} imports {others}"


def test_no_import_runs_back_up():
    for folder in SHARED:
        for path in (PACKAGE / folder).rglob("*.py"):
            above = wsss_imports(path) & ABOVE
            assert not above, f"{path.relative_to(PACKAGE)} imports {above}"


def test_import_checker_sees_a_violation(tmp_path):
    """The checks above can fail: a relative import of another method is seen."""
    sample = PACKAGE / "irn" / "make_labels.py"
    assert "cues" in wsss_imports(sample) and "walk" in wsss_imports(sample)
    fake = PACKAGE / "irn" / "_tmp_violation.py"
    try:
        fake.write_text("from ..psa.make_labels import seed_alphas\n")
        assert wsss_imports(fake) == {"psa"}
    finally:
        fake.unlink()


def test_every_method_has_its_section_and_pipeline():
    config = load_config(None)
    for name, method in METHODS.items():
        assert hasattr(config, name), name  # its settings: the config section of its name
        pipeline = method.pipeline
        if method.walk:
            stages = pipeline.STAGES
            assert [stages.seeds.command, stages.network.command, stages.walk.command] == \
                [f"make-{name}-labels", f"train-{name}", f"make-{name}-pseudo"]
            assert set(method.timed_stages) >= {"train-cam", stages.network.command, stages.walk.command}
        else:
            assert callable(pipeline.run)


def test_old_keys_read_as_today_s(caplog):
    config = load_config(None, ["pipeline=affinity", "aff.radius=3", "walk.steps=8", "walk.alpha=4", "walk.bg_factor=0.5"])
    assert (config.pipeline, config.psa.radius, config.psa.steps, config.psa.walk_alpha, config.psa.walk_bg_factor) == \
        ("psa", 3, 8, 4.0, 0.5)
    assert config.psa.bg_factor == 0.5  # the seeds' factor stays its own
    assert "walk.steps is now psa.steps" in caplog.text and "pipeline: affinity is now called pipeline: psa" in caplog.text


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".txt"}


def test_run_directory_of_the_earlier_layout_loads_and_resumes(pseudo_run, tmp_path, capsys):
    """A PSA run made before each method had its own folders and PSA its one name (aff_labels/,
    aff/, pseudo/, config sections aff: and walk:, pipeline: affinity, command make-pseudo):
    its folders move once, byte for byte, and nothing finished is made again."""
    _, run_dir = pseudo_run
    legacy = tmp_path / "legacy"
    shutil.copytree(run_dir, legacy)
    (legacy / "psa_labels").rename(legacy / "aff_labels")
    (legacy / "psa").rename(legacy / "aff")
    (legacy / "pseudo").mkdir()
    (legacy / "psa_pseudo" / "train").rename(legacy / "pseudo" / "train")
    (legacy / "psa_pseudo").rmdir()
    tree = yaml.safe_load((legacy / "config.yaml").read_text())
    psa = tree.pop("psa")
    walk_keys = {"beta", "steps", "walk_alpha", "walk_bg_factor", "crf", "crf_power", "save_scores", "eval_splits", "workers"}
    tree["walk"] = {{"walk_alpha": "alpha", "walk_bg_factor": "bg_factor"}.get(k, k): v for k, v in psa.items() if k in walk_keys}
    tree["aff"] = {k: v for k, v in psa.items() if k not in walk_keys}
    tree["pipeline"] = "affinity"
    (legacy / "config.yaml").write_text(yaml.safe_dump(tree))
    before = tree_digest(legacy)

    common = ["--run-dir", str(legacy), "--no-progress"]
    assert main(["make-pseudo", *common, "--split", "train"]) == 0
    assert main(["train-aff", *common]) == 0
    err = capsys.readouterr().err
    assert "`wsss make-pseudo` is now `wsss make-psa-pseudo`" in err and "`wsss train-aff` is now `wsss train-psa`" in err
    assert "outputs were made with other settings" not in err and "training anew" not in err
    assert not (legacy / "aff").exists() and not (legacy / "pseudo").exists()
    renamed = {"aff_labels/": "psa_labels/", "aff/": "psa/", "pseudo/": "psa_pseudo/"}
    after = tree_digest(legacy)
    for name, digest in before.items():
        if name in ("config.yaml", "run_info.json", ".wsss-lock"):  # written anew by the command
            continue
        new = next((new + name[len(old):] for old, new in renamed.items() if name.startswith(old)), name)
        assert after.get(new) == digest, name  # moved, not remade: the same bytes
    assert yaml.safe_load((legacy / "config.yaml").read_text())["pipeline"] == "psa"  # written anew, today's keys


@pytest.mark.parametrize("method", ["psa", "irn"])
def test_legacy_pseudo_labels_go_to_the_method_that_made_them(tmp_path, method):
    from wsss.run.layout import upgrade_legacy_layout

    run = tmp_path / "run"
    folder = run / "pseudo" / "val" / "rw"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"label")
    settings = {"method": "irn", "irn_net": "x"} if method == "irn" else {"affinity_net": "x", "alpha": 4}
    (run / "pseudo" / "val" / "settings.json").write_text(json.dumps(settings))
    foreign = run / "pseudo" / "notes"
    foreign.mkdir()  # not made by a walk: stays where it is
    moves = upgrade_legacy_layout(run)
    assert moves == [(run / "pseudo" / "val", run / f"{method}_pseudo" / "val")]
    assert (run / f"{method}_pseudo" / "val" / "rw" / "a.png").read_bytes() == b"label"
    assert foreign.is_dir() and upgrade_legacy_layout(run) == []
