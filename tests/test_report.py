"""The run report: a data-driven metric table, SVG plots and a gallery, checked in headless Chromium."""

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import yaml
from chromium import Chromium, find_chromium
from PIL import Image

from wsss.cli import main
from wsss.report import build_report
from wsss.report.gallery import heat_colours, image_miou, pick_rows
from wsss.report.run_data import NO_GROUND_TRUTH, NOT_RUN, SALIENCY_COLUMN, RunData
from wsss.report.svg import bar_chart, line_chart, nice_ticks

# `make test` sets this: there the browser test must run, not skip.
BROWSER_REQUIRED = os.environ.get("WSSS_REQUIRE_BROWSER") == "1"

# What the browser test reads back from the page's DOM.
PAGE_STATE = """(() => ({
  metricRows: document.querySelectorAll('#metrics tbody tr').length,
  plots: [...document.querySelectorAll('svg.plot')].map(s => ({
    id: s.dataset.plot, marks: s.querySelectorAll('.mark').length,
    width: s.getBoundingClientRect().width, height: s.getBoundingClientRect().height})),
  images: [...document.images].map(i => ({alt: i.alt, loaded: i.complete && i.naturalWidth > 0})),
  galleries: [...document.querySelectorAll('table.gallery')].map(t => ({
    split: t.dataset.split, rows: t.tBodies[0].rows.length, images: t.querySelectorAll('img').length,
    marks: [...t.querySelectorAll('.tile-missing')].map(m => m.textContent)})),
  sectionErrors: document.querySelectorAll('.section-error').length,
  text: document.body.innerText,
}))()"""


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        message = "chromium not installed (Debian: apt-get install chromium)"
        if BROWSER_REQUIRED:
            pytest.fail(f"{message}, and WSSS_REQUIRE_BROWSER=1 requires it; `make test` installs it")
        pytest.skip(f"{message}; `make test` installs it and requires this test")
    with Chromium() as chromium:
        yield chromium


def load_page(browser, path):
    browser.open(path)
    return browser.evaluate(PAGE_STATE), browser.console_errors()


# --- the whole thing, in a browser ----------------------------------------------------------------
def test_wsss_run_writes_a_report_that_loads_in_chromium(pseudo_run, tmp_path, browser):
    config, pseudo_run_dir = pseudo_run
    run_dir = tmp_path / "run"
    shutil.copytree(pseudo_run_dir, run_dir)
    # finished stages are skipped; a one-epoch segmentation network on 80 px crops finishes the run
    seg = ["seg.epochs=1", "seg.crop_size=80", "seg.resize_long=[72,96]", "seg.output_stride=16", "seg.eval_scales=[1.0]",
           "seg.eval_crf=false"]
    assert main(["run", "--config", str(config), "--run-dir", str(run_dir), "--no-progress",
                 *[a for s in seg for a in ("--set", s)]]) == 0
    page = run_dir / "report.html"
    html = page.read_text()
    # stands alone: every src/href is a data URI or an anchor on the page, and there is no script
    assert all(link.startswith(("data:", "#")) for link in re.findall(r'(?:src|href)="([^"]*)"', html))
    assert "<script" not in html and "url(" not in html

    state, errors = load_page(browser, page)
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in browser.requested_urls()), browser.requested_urls()
    assert state["sectionErrors"] == 0
    # CAM, RW, RW+CRF on train; the segmentation network single- and multi-scale (here: + flip) on
    # val; the background threshold t* the CAMs gave without masks
    assert state["metricRows"] == 3 + 2 + 1, state["text"][:2000]
    assert "cam_threshold" in state["text"] and "evidence" in state["text"], state["text"][:3000]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"mIoU {summary['cam/train']['miou']:.2f}" in state["text"]
    plots = {p["id"]: p for p in state["plots"]}
    assert {"per-class-train", "per-class-val", "threshold-sweep", "loss-cam", "loss-psa", "loss-seg"} <= set(plots)
    assert all(p["marks"] > 0 and p["width"] > 100 and p["height"] > 100 for p in plots.values()), plots
    # every picture decoded
    images = state["images"]
    assert len(images) == html.count("<img ") and all(i["loaded"] for i in images), [i for i in images if not i["loaded"]]
    galleries = {g["split"]: g for g in state["galleries"]}
    assert set(galleries) == {"train", "val"}
    # train: best, median, worst, 2 fixed (fewer if they coincide), each with the image, a CAM per
    # labelled class, CAM@t, RW, RW+CRF, the segmentation network and the ground truth
    train, val = galleries["train"], galleries["val"]
    assert train["rows"] >= 3 and train["images"] >= 6 * train["rows"] and train["marks"] == []
    # val has only the segmentation network: image, its prediction, ground truth; CAM/RW marked
    assert val["rows"] >= 3 and val["images"] == 3 * val["rows"] and val["marks"] == [NOT_RUN] * 4 * val["rows"]

    shot = tmp_path / "report.png"
    width, height = browser.screenshot(shot)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] == height > 1000 and pixels.std() > 20  # the full page, not a blank one


def test_page_checks_catch_broken_images_and_console_errors(tmp_path, browser):
    """The browser test's checks can fail: a broken image and a console error are both seen."""
    good = Image.new("RGB", (4, 4), (200, 0, 0))
    good.save(tmp_path / "good.png")
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><table id="metrics"><tbody><tr><td>1</td></tr></tbody></table>'
                    '<img src="good.png" alt="good"><img src="data:image/png;base64,iVBORw0KGgo=" alt="broken">'
                    '<img src="missing.png" alt="missing"><script>console.error("boom")</script></body></html>')
    state, errors = load_page(browser, page)
    assert {i["alt"]: i["loaded"] for i in state["images"]} == {"good": True, "broken": False, "missing": False}
    assert any("boom" in e for e in errors) and any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)


# --- the metric table ----------------------------------------------------------------------------------
@pytest.fixture
def made_up_run(tmp_path, tiny_dataset):
    """A run directory written by hand: metrics of stages this code knows and of ones it does not,
    a split without masks, and a stage the config asks for that never ran."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    ids = [f"extra_{i}" for i in range(3)]
    for image_id in ids:  # a split of tagged images without masks
        shutil.copy(root / "JPEGImages" / "val_0000.jpg", root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets" / "Segmentation" / "extra.txt").write_text("\n".join(ids) + "\n")
    labels = json.loads((root / "image_labels.json").read_text())
    labels.update({i: labels["val_0000"] for i in ids})
    (root / "image_labels.json").write_text(json.dumps(labels))

    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "cams" / "extra").mkdir(parents=True)
    config = {"name": "made-up", "seed": 3, "pipeline": "affinity",
              "data": {"root": str(root), "train_split": "train", "val_split": "val"},
              "cam": {"eval_splits": ["train", "extra"]}, "walk": {"eval_splits": ["train"], "crf": True}, "seg": {}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {
        "cam/train": {"miou": 41.5, "best_threshold": 0.25},
        "rw/train": {"miou": 47.25},
        "seg/val": {"miou": 52.0, "note": "multi-scale+flip"},
        "ssnet_stage2/val": {"miou": 55.5},
        "saliency/heldout": {"mae": 0.0812, "max_f": 0.8734},
        "ssnet": {"stage1/train": {"miou": 38.25}},
        "timings_s": {"train-cam": 75.0, "make-cam/train": 4.5},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "eval" / "seg_val.json").write_text(json.dumps(
        {"split": "val", "miou": {"single-scale": 50.0, "multi-scale+flip": 52.0},
         "per_class_iou": {"single-scale": {"background": 80.0, "disc": 20.0},
                           "multi-scale+flip": {"background": 82.0, "disc": None}}}))
    (run_dir / "run_info.json").write_text(json.dumps(
        {"versions": {"git_commit": "abc1234def", "torch": "2.13.0"}, "seed": 3, "hardware": {"cpu_count": 2}}))
    return run_dir


def test_metric_table_is_data_driven_and_marks_missing_stages(made_up_run):
    run = RunData(made_up_run)
    columns, rows = run.metric_rows()
    cells = {row.stage: row.cells for row in rows}
    assert columns[:2] == ["train", "val"] and set(columns) == {"train", "val", "extra", "heldout"}
    assert cells["cam"]["train"] == {"miou": 41.5, "best_threshold": 0.25}
    assert cells["cam"]["extra"] == NO_GROUND_TRUTH  # asked for, but the split has no masks
    assert cells["rw"]["train"] == {"miou": 47.25}
    assert cells["rw_crf"]["train"] == NOT_RUN  # the config has walk.crf, summary.json no result
    assert cells["seg: single-scale"]["val"] == {"miou": 50.0} and cells["seg: multi-scale+flip"]["val"] == {"miou": 52.0}
    # stages this code has never heard of appear as they are
    assert cells["ssnet_stage2"]["val"] == {"miou": 55.5}
    assert cells["ssnet/stage1"]["train"] == {"miou": 38.25}
    assert cells["saliency"]["heldout"] == {"mae": 0.0812, "max_f": 0.8734}
    assert [r.stage for r in rows][:5] == ["cam", "rw", "rw_crf", "seg: single-scale", "seg: multi-scale+flip"]
    assert run.info("git_commit") == "abc1234def" and run.info("cpu_count") == 2

    path = build_report(made_up_run, made_up_run.parent / "out" / "page.html")
    html = path.read_text()
    table = html[html.index('<table id="metrics">'):]
    table = table[:table.index("</table>")]
    for text in ("mIoU 41.50", "bg threshold 0.25", "MAE 0.081", "max F 0.873", "ssnet_stage2", NOT_RUN, NO_GROUND_TRUTH):
        assert text in table, text
    assert "commit abc1234def" in html and "train-cam" in html and "1 min 15 s" in html
    assert "no wall time recorded for train-psa, make-psa-pseudo, train-seg" in html
    assert not (made_up_run / "report.html").exists()  # --output given: nothing written into the run
    assert "section-error" not in html
    assert 'data-plot="per-class-val"' in html  # from eval/seg_val.json


def test_report_command_errors_and_output(tmp_path, made_up_run, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: run directory not found" in capsys.readouterr().err
    assert main(["report", str(made_up_run)]) == 0
    assert (made_up_run / "report.html").stat().st_mode & 0o044 == 0o044  # readable by others: it is for sharing
    (made_up_run / "report.html").unlink()
    assert main(["report", "--run-dir", str(made_up_run)]) == 0 and (made_up_run / "report.html").exists()
    capsys.readouterr()
    assert main(["report"]) == 2
    assert "name the run directory" in capsys.readouterr().err


def test_report_failure_is_logged_and_does_not_raise(tmp_path, caplog, monkeypatch):
    from wsss import report

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report, "build_report", broken)
    with caplog.at_level(logging.ERROR, logger="wsss"):
        assert report.run_safely(tmp_path) is None
    assert "disk on fire" in caplog.text and "results are unaffected" in caplog.text


# --- pieces ------------------------------------------------------------------------------------------
def test_bar_heights_are_proportional_to_values():
    chart = bar_chart(["a", "b", "c"], {"s": [100.0, 50.0, None]}, "t", "p")
    heights = [float(h) for h in re.findall(r'<rect class="mark"[^>]* height="([\d.]+)"', chart)]
    assert len(heights) == 2 and heights[1] == pytest.approx(heights[0] / 2, abs=0.1)


def test_line_chart_draws_every_point_and_ticks_cover_the_data():
    chart = line_chart({"x": ([0, 1, 2, 3], [0.5, 0.25, 0.2, 0.1])}, "loss", "l", "step", "loss")
    points = re.search(r'<polyline class="mark"[^>]* points="([^"]+)"', chart).group(1).split()
    assert len(points) == 4
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys)  # falling values are drawn lower and lower (SVG y grows downwards)
    ticks = nice_ticks(0.13, 0.87)
    assert ticks[0] <= 0.13 and ticks[-1] >= 0.87 and len(ticks) <= 7


def test_gallery_rows_and_scores():
    scores = {"a": 90.0, "b": 10.0, "c": 50.0, "d": 40.0, "e": float("nan"), "g": 45.0}
    rows = pick_rows(["a", "b", "c", "d", "e", "f", "g"], scores, ["a", "f"])
    assert rows == [("a", ["best", "fixed"]), ("g", ["median"]), ("b", ["worst"]), ("f", ["fixed"])]
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 0, 1, 0], [0, 0, 1, 1]])  # one background pixel of class 1 wrong; void ignored
    assert image_miou(pred, gt, 3) == pytest.approx(100 * (4 / 5 + 2 / 3) / 2)
    ramp = heat_colours(np.array([[0.0, 1.0]]))
    assert ramp[0, 0, 2] > 150 and ramp[0, 0, 0] == 0 and ramp[0, 1, 0] > 200 and ramp[0, 1, 2] == 0  # blue -> red


def test_ssnet_run_table_has_a_saliency_column_and_its_own_expected_stages(tmp_path):
    run_dir = tmp_path / "ssnet-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"name": "s", "pipeline": "ssnet", "data": {"root": str(tmp_path / "absent"), "train_split": "train",
                                                    "val_split": "val"},
         "cam": {"eval_splits": ["train"]}, "walk": {"eval_splits": ["train"]}, "seg": {}}))
    saliency = {"mae": 0.1723, "max_f": 0.7212, "best_threshold": 149, "num_images": 70}
    (run_dir / "summary.json").write_text(json.dumps({
        "ssnet1/pseudo_seg/train": {"miou": 58.9},
        "ssnet2/seg/val": {"miou": 58.0, "note": "single-scale+CRF"},
        "ssnet2/saliency": {"single-scale": saliency, "multi-scale+flip": {**saliency, "max_f": 0.7174}},
        "timings_s": {"train-ssnet/1": 60.0},
    }))
    run = RunData(run_dir)
    columns, rows = run.metric_rows()
    cells = {row.stage: row.cells for row in rows}
    # the saliency variants are rows in a column of their own, not splits
    assert columns == ["train", "val", SALIENCY_COLUMN] and run.splits() == ["train", "val"]
    assert cells["ssnet2/saliency: single-scale"][SALIENCY_COLUMN] == {
        "mae": 0.1723, "max_f": 0.7212, "saliency_threshold": 149, "num_images": 70}
    # the SSNet stages are expected, the AffinityNet ones are not
    assert cells["ssnet2/pseudo_seg"]["train"] == NOT_RUN and cells["ssnet1/seg"]["val"] == NOT_RUN
    assert not {"cam", "rw", "rw_crf", "seg"} & set(cells)

    html = build_report(run_dir, tmp_path / "page.html").read_text()
    assert "max F 0.721" in html and "at threshold 149/255" in html and "bg threshold 149" not in html
    assert "no wall time recorded for make-ssnet-pseudo, eval-ssnet" in html and "train-cam" not in html
