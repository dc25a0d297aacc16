"""The run report as one self-contained HTML page: run facts, metric table, plots, gallery.

Everything is inline (CSS, SVG plots, images as data URIs); the page loads nothing and runs no
script, so it opens offline and can be mailed or archived as a single file.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from html import escape
from typing import Callable, Optional

import yaml

from ..io import VOC_PALETTE
from . import svg
from .gallery import Gallery, Tile, build_galleries
from .run_data import NO_GROUND_TRUTH, NOT_RUN, RunData, format_metrics, is_number

log = logging.getLogger("wsss")

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #222; background: #fafafa; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
h3 { margin: 22px 0 8px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; background: #fff; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; font-size: 14px; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.metric-main { font-weight: 600; font-size: 15px; }
.metric-extra { color: #666; font-size: 12px; }
.mark { color: #8a6d3b; background: #fcf8e3; font-style: italic; }
.missing { color: #8a6d3b; background: #fcf8e3; border: 1px dashed #d6c58f; padding: 8px 12px; display: inline-block; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.plot-box { overflow-x: auto; max-width: 100%; }
.gallery-box { overflow-x: auto; max-width: 100%; }
table.gallery td { padding: 4px; } table.gallery th { font-size: 13px; }
table.gallery figure + figure { margin-top: 4px; }
.row-head { font-size: 13px; margin-bottom: 4px; }
table.gallery .legend { max-width: 200px; font-size: 12px; gap: 2px 8px; }
figure { margin: 0; }
figure img { display: block; border: 1px solid #ccc; image-rendering: auto; }
figure img.labels { image-rendering: pixelated; }
figcaption { font-size: 12px; max-width: 200px; } figcaption .note { color: #666; }
.tile-missing { display: flex; align-items: center; justify-content: center; border: 1px dashed #d6c58f;
  background: #fcf8e3; color: #8a6d3b; font-style: italic; font-size: 13px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 13px; margin: 6px 0; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #888; vertical-align: -2px; margin-right: 4px; }
pre { background: #fff; border: 1px solid #ddd; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def html_table(header: Optional[list[str]], rows: list[list[str]], table_id: str = "", numeric: tuple[int, ...] = ()) -> str:
    """A table of already-escaped cell HTML (``header`` None: a key/value table, keys as row heads)."""
    attr = f' id="{table_id}"' if table_id else ""
    if header is None:
        body = "".join(f"<tr><th>{r[0]}</th>" + "".join(f"<td>{c}</td>" for c in r[1:]) + "</tr>" for r in rows)
        return f"<table{attr}><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def flatten(mapping: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


# --- sections -----------------------------------------------------------------------------------
def run_section(run: RunData) -> str:
    versions = {name: run.info(*keys) for name, keys in (
        ("wsss", ("wsss", "versions.wsss")), ("python", ("python", "versions.python")),
        ("torch", ("torch", "versions.torch")), ("numpy", ("numpy", "versions.numpy")))}
    hardware = {name: run.info(*keys) for name, keys in (
        ("device", ("device", "hardware.device")), ("GPU", ("gpu", "hardware.gpu")),
        ("CPU", ("cpu_model", "hardware.cpu_model", "cpu", "hardware.cpu")),
        ("CPU cores", ("cpu_count", "hardware.cpu_count")), ("torch threads", ("torch_threads", "hardware.torch_threads")),
        ("memory (GiB)", ("memory_gib", "hardware.memory_gib")), ("host", ("hostname", "hardware.hostname")))}
    facts = [
        ("run directory", str(run.run_dir.resolve())),
        ("git commit", run.info("git_commit", "commit", "versions.git_commit", "git.commit") or "not recorded"),
        ("seed", run.info("seed") if run.info("seed") is not None else run.config.get("seed", "not recorded")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None) or "not recorded"),
        ("hardware", ", ".join(f"{k}: {v}" for k, v in hardware.items() if v is not None) or "not recorded"),
        ("last command", run.info("command") or "not recorded"),
    ]
    parts = ["<h2 id=\"run\">Run</h2>", html_table(None, [[escape(k), escape(str(v))] for k, v in facts], "run-facts")]
    parts.append("<h3>Dataset</h3>" + dataset_table(run))
    parts.append("<h3>Wall time per stage</h3>")
    timings = run.timings()
    if timings:
        rows = [[escape(k), escape(format_seconds(v))] for k, v in timings.items()]
        rows.append(["<b>total</b>", f"<b>{escape(format_seconds(sum(timings.values())))}</b>"])
        parts.append(html_table(["stage", "wall time"], rows, "timings", numeric=(1,)))
        parts.append('<p class="sub">As recorded by the last <code>wsss run</code> that reached each stage; a stage '
                     "that found its work already done records the time it took to check.</p>")
        absent = [s for s in run.method.timed_stages
                  if not any(k.split("/")[0] == s for k in timings)]
        if absent:
            parts.append(missing(f"no wall time recorded for {', '.join(absent)} (not run, or run as a separate "
                                 "command; `wsss run` records every stage)"))
    else:
        parts.append(missing("no stage timings recorded (`wsss run` records them; stages run one by one do not)"))
    other = {k: v for k, v in flatten(run.run_info).items() if not isinstance(v, (list, dict))}
    if other:
        parts.append("<details><summary>run_info.json</summary>"
                     + html_table(["key", "value"], [[escape(k), escape(str(v))] for k, v in other.items()]) + "</details>")
    config = yaml.safe_dump(run.config, sort_keys=False) if run.config else "(no config.yaml)"
    parts.append(f"<details><summary>config.yaml</summary><pre>{escape(config)}</pre></details>")
    return "".join(parts)


def dataset_table(run: RunData) -> str:
    root = run.section("data").get("root")
    if run.data_root is None:
        return missing(f"dataset not found (data.root: {root!r}); pass --data-root to show it and the gallery")
    rows = []
    names: list[str] = []
    for split in run.splits():
        voc = run.dataset(split)
        if voc is None:
            rows.append([escape(split), "", missing("split not found")])
            continue
        names = voc.class_names
        truth = "masks" if voc.has_masks else f'<span class="mark">{NO_GROUND_TRUTH}</span>'
        rows.append([escape(split), str(len(voc)), truth])
    info = f"<p>root: <code>{escape(str(run.data_root))}</code>"
    if names:
        info += f"; {len(names) - 1} classes + background: {escape(', '.join(names[1:]))}"
    return info + "</p>" + html_table(["split", "images", "ground truth"], rows, "dataset", numeric=(1,))


def metric_cell(value) -> str:
    if value == "—":  # the stage is not meant to run on this split
        return '<span class="metric-extra">—</span>'
    if isinstance(value, str):
        return f'<span class="mark">{escape(value)}</span>'
    pairs = format_metrics(value)
    if not pairs:
        return ""
    (label, text), rest = pairs[0], pairs[1:]
    extra = " · ".join(f"{escape(k)} {escape(v)}" for k, v in rest)
    return (f'<span class="metric-main">{escape(label)} {escape(text)}</span>'
            + (f'<br><span class="metric-extra">{extra}</span>' if extra else ""))


def metrics_section(run: RunData) -> str:
    parts = ['<h2 id="metrics">Metrics</h2>']
    columns, rows = run.metric_rows()
    if rows:
        header = ["stage"] + [escape(c or "(all)") + ("" if run.has_ground_truth(c) is not False else
                                                     f' <span class="mark">({NO_GROUND_TRUTH})</span>') for c in columns]
        body = [[f"{escape(r.title)}<br><code class=\"metric-extra\">{escape(r.stage)}</code>"]
                + [metric_cell(r.cells.get(c, "—")) for c in columns] for r in rows]
        parts.append(html_table(header, body, "metrics"))
        parts.append('<p class="sub">mIoU in % against the split\'s masks (void ignored); '
                     f'"{NOT_RUN}": the config asks for this result but the run has none (yet); "{NO_GROUND_TRUTH}": '
                     'the split has no masks to score against; "—": not part of the pipeline for that split.</p>')
    else:
        parts.append(missing("no stage has been scored yet (summary.json holds no metrics)"))
    parts.append("<h3>Per-class IoU</h3>")
    charts = run.per_class_series()
    if charts:
        parts.append('<div class="plots">' + "".join(
            f'<div class="plot-box">{svg.bar_chart(classes, series, f"Per-class IoU, {split}", f"per-class-{split}")}</div>'
            for split, (classes, series) in charts.items()) + "</div>")
    else:
        parts.append(missing("no per-class IoU: no stage was scored against masks"))
    parts.append("<h3>CAM background threshold</h3>")
    sweeps = run.threshold_sweeps()
    if sweeps:
        series = {f"{split}": (xs, ys) for split, (xs, ys, _) in sweeps.items()}
        markers = {}
        for i, (split, (xs, ys, best)) in enumerate(sweeps.items()):
            if is_number(best) and best in xs:
                markers[f"{split}: best {best:.2f} ({ys[xs.index(best)]:.1f})"] = (best, ys[xs.index(best)], svg.series_colour(i))
        parts.append(svg.line_chart(series, "CAM mIoU vs background threshold", "threshold-sweep",
                                    "background threshold", "mIoU (%)", markers))
    else:
        parts.append(missing("no threshold sweep: eval-cam not run"))
    tune = next((r for k, r in run.evals.items() if k.startswith("tune_") and isinstance(r.get("results"), list)), None)
    if tune and tune["results"]:
        keys = [k for k in tune["results"][0] if k != "miou"]
        rows_html = [[escape(str(r.get(k))) for k in keys] + [f"{r.get('miou', float('nan')):.2f}"] for r in tune["results"][:5]]
        parts.append(f"<h3>Random-walk tuning (top 5 of {len(tune['results'])}, {tune.get('num_images', '?')} images "
                     f"of {escape(str(tune.get('split')))})</h3>" + html_table([*map(escape, keys), "mIoU"], rows_html, "tune"))
    return "".join(parts)


def training_section(run: RunData) -> str:
    parts = ['<h2 id="training">Training</h2>']
    charts = []
    known = ["cam", "psa", "irn", "seg", "seg_gt"]  # pipeline order first, then any other trained stage
    stages = sorted(run.train_logs, key=lambda s: (known.index(s) if s in known else len(known), s))
    for stage in stages:
        records = run.train_logs[stage]
        loss_keys = [k for k in (records[0] if records else {}) if "loss" in k]
        if not loss_keys:
            continue
        steps = [float(r.get("step", i + 1)) for i, r in enumerate(records)]
        series, faint = {}, []
        for key in loss_keys:
            points = [(s, float(r[key])) for s, r in zip(steps, records) if is_number(r.get(key))]
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            smooth = svg.moving_average(ys, max(1, len(ys) // 40))
            series[key] = svg.thin(xs, smooth)
            if len(ys) > 1:
                series[f"{key} (raw)"] = svg.thin(xs, ys)
                faint.append(f"{key} (raw)")
        if series:
            order = [k for k in series if k in faint] + [k for k in series if k not in faint]  # raw behind smooth
            title = f"{stage}: training loss ({len(records)} steps, epoch {int(records[-1].get('epoch', 0)) + 1})"
            charts.append(svg.line_chart({k: series[k] for k in order}, title, f"loss-{stage}", "step",
                                         "loss (moving average)", faint=faint))
    if charts:
        parts.append('<div class="plots">' + "".join(f'<div class="plot-box">{c}</div>' for c in charts) + "</div>")
    else:
        parts.append(missing("no training log: no stage was trained in this run directory"))
    for stage in ("cam", run.method.name, "seg") if run.method.walk else ():  # a seed-and-walk method's trained stages
        if stage not in run.train_logs:
            parts.append(missing(f"{stage}: not trained (no {stage}/train_log.jsonl)"))
    return "".join(parts)


def legend(class_names: list[str], classes: Optional[list[int]] = None) -> str:
    indices = classes if classes is not None else list(range(len(class_names))) + [255]
    items = []
    for index in indices:
        name = "void / ignored" if index == 255 else (class_names[index] if index < len(class_names) else str(index))
        r, g, b = VOC_PALETTE[index]
        items.append(f'<span><span class="swatch" style="background: rgb({r},{g},{b})"></span>{escape(name)}</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def tile_html(tile: Tile, image_id: str, size: tuple[int, int]) -> str:
    caption = (f"<b>{escape(tile.title)}</b>" if tile.title else "") + \
        (f'<br><span class="note">{escape(tile.note)}</span>' if tile.title and tile.note else
         f'<span class="note">{escape(tile.note)}</span>' if tile.note else "")
    caption = f"<figcaption>{caption}</figcaption>" if caption else ""
    if tile.uri is None:
        w, h = size
        return f'<figure><div class="tile-missing" style="width:{w}px;height:{h}px">{escape(tile.mark)}</div>{caption}</figure>'
    css = ' class="labels"' if tile.uri.startswith("data:image/png") else ""
    return (f'<figure><img{css} src="{tile.uri}" width="{tile.width}" height="{tile.height}" '
            f'alt="{escape(tile.title or image_id)}">{caption}</figure>')


def gallery_html(gallery: Gallery, class_names: list[str]) -> str:
    """A table: one row per image, one column per stage, so outputs line up under their titles."""
    ranked = f"ranked by per-image mIoU of {escape(gallery.ranked_by)}" if gallery.ranked_by else "not ranked"
    parts = [f'<h3>Split {escape(gallery.split)} <span class="sub">({ranked})</span></h3>']
    if gallery.note:
        parts.append(missing(gallery.note))
    header = "".join(f"<th>{escape(c)}</th>" for c in gallery.columns)
    body = []
    for row in gallery.rows:
        first = next((t for tiles in row.cells.values() for t in tiles if t.uri is not None), None)
        size = (first.width, first.height) if first else (160, 120)
        score = f" · mIoU {row.score:.1f}" if row.score is not None and math.isfinite(row.score) else ""
        cells = []
        for i, column in enumerate(gallery.columns):
            tiles = row.cells.get(column) or [Tile("", mark="not run")]
            html = "".join(tile_html(t, row.image_id, size) for t in tiles)
            if i == 0:
                reasons = escape(", ".join(row.reasons))
                html = f'<div class="row-head"><b>{escape(row.image_id)}</b><br>{reasons}{score}</div>' + html
            if i == len(gallery.columns) - 1:  # the classes of this row's label maps, under its ground truth
                html += legend(class_names, row.classes)
            cells.append(f"<td>{html}</td>")
        body.append(f'<tr data-image="{escape(row.image_id)}">' + "".join(cells) + "</tr>")
    parts.append(f'<div class="gallery-box"><table class="gallery" data-split="{escape(gallery.split)}">'
                 f"<thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    return "".join(parts)


def gallery_section(run: RunData, images: Optional[list[str]], device: str) -> str:
    parts = ['<h2 id="gallery">Gallery</h2>']
    galleries, notes = build_galleries(run, images, device)
    if galleries:
        names = run.dataset(galleries[0].split).class_names
        parts.append("<p>Label maps in the VOC palette:</p>" + legend(names))
        parts += [gallery_html(g, names) for g in galleries]
    if notes:
        parts += [missing(n) for n in notes]
    if not galleries and not notes:
        parts.append(missing("no CAMs or pseudo labels in this run directory: nothing to show"))
    return "".join(parts)


def guarded(name: str, build: Callable[[], str]) -> str:
    """A section's HTML; a section that fails is replaced by a visible note, so one odd file in a
    run directory does not cost the rest of the report."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - reported on the page and in the log
        log.warning("report: the %s section failed: %s: %s", name, type(exc).__name__, exc)
        why = f"{escape(type(exc).__name__)}: {escape(str(exc))}"
        return f'<h2>{escape(name)}</h2><p class="missing section-error">could not render this section: {why}</p>'


def render(run: RunData, images: Optional[list[str]] = None, device: str = "cpu") -> str:
    """The whole report page as an HTML string."""
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = run.info("git_commit", "commit", "versions.git_commit", "git.commit")
    seed = run.info("seed")
    subtitle = " · ".join(filter(None, [f"commit {str(commit)[:10]}" if commit else "commit not recorded",
                                        f"seed {seed}" if seed is not None else "", f"report made {created}"]))
    body = [
        f"<h1>Run report: {escape(run.name)}</h1><p class=\"sub\">{escape(subtitle)}</p>",
        '<p><a href="#run">Run</a> · <a href="#metrics">Metrics</a> · <a href="#training">Training</a> · '
        '<a href="#gallery">Gallery</a></p>',
        guarded("Run", lambda: run_section(run)),
        guarded("Metrics", lambda: metrics_section(run)),
        guarded("Training", lambda: training_section(run)),
        guarded("Gallery", lambda: gallery_section(run, images, device)),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>wsss report: {escape(run.name)}</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")
