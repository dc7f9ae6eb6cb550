"""The report page: one self-contained HTML file rendered from `fusekit.report.collect.ReportData`.

Everything is inline: CSS in a ``<style>``, charts as inline SVG (`fusekit.report.charts`), pictures as ``data:``
URIs, no script and no font to fetch; a Content-Security-Policy (``default-src 'none'``) makes the browser refuse
any request the page might still try. Each item of the report is a section with a stable id (`SECTIONS`). The page
holds no clock time: the same workspace renders to the same bytes.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable, Sequence

from fusekit import __version__
from fusekit.report import charts
from fusekit.report.collect import ReportData, RunData, Stage
from fusekit.text import reasons

SECTIONS = (
    ("funnel", "Funnel"),
    ("classes", "Classes before and after balancing"),
    ("balance", "Class balance"),
    ("duplicates", "Duplicates between datasets"),
    ("samples", "Samples"),
    ("crawl", "Crawl yield"),
    ("review", "Review"),
    ("runs", "Runs"),
    ("explain", "Feature visualisation (class activation maps)"),
)

CSS = """
body{font-family:sans-serif;margin:0;color:#222;background:#fafafa;font-size:14px}
header{background:#263238;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b0bec5;font-size:12px}
nav{background:#eceff1;padding:6px 24px;position:sticky;top:0}
nav a{margin-right:14px;color:#1565c0;text-decoration:none}
main{padding:0 24px 40px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;margin:16px 0;padding:8px 16px}
h2{font-size:17px;margin:8px 0}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f5f5f5}td.l,th.l{text-align:left}.note{color:#666;font-style:italic}
.grid{display:flex;flex-wrap:wrap;gap:3px;align-items:center;margin:2px 0 8px}.grid span{width:110px;font-size:12px}
.grid img{width:64px;height:64px;image-rendering:auto;border:1px solid #ccc}
.charts,.row{display:flex;flex-wrap:wrap;gap:4px 24px;align-items:flex-start}
figure{margin:6px 0}figure img{max-width:100%;border:1px solid #ccc}
figcaption{font-size:12px;color:#555}
"""


def render(data: ReportData) -> str:
    """The whole page."""
    body = [_funnel(data), _classes(data), _balance(data), _duplicates(data), _samples(data), _crawl(data),
            _review(data), _runs(data), _explain(data)]
    nav = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title in SECTIONS)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>fusekit report</title><style>{CSS}</style></head><body>"
            f"<header><h1>fusekit report</h1><p>workspace {escape(data.workspace)} &middot; fusekit "
            f"{escape(__version__)}</p></header><nav>{nav}</nav><main>" + "".join(body) + "</main></body></html>\n")


# -- helpers ------------------------------------------------------------------------------------------------------

def _section(sid: str, content: str) -> str:
    title = dict(SECTIONS)[sid]
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{content}</section>'


def _not_run(text: str) -> str:
    return f'<p class="note not-run">{escape(text)}</p>'


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(str(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1, cls: str = "",
          text: Sequence[int] = ()) -> str:
    """An HTML table; the first ``left`` columns and the columns in ``text`` are left-aligned text. A cell may be
    (value, style)."""
    aligned = set(range(left)) | set(text)
    head = "".join(f'<th class="l">{escape(h)}</th>' if i in aligned else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    out = [f'<table{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}><tr>{head}</tr>']
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            style = ""
            if isinstance(cell, tuple):
                cell, style = cell
            attrs = (' class="l"' if i in aligned else "") + (f' style="{style}"' if style else "")
            cells.append(f"<td{attrs}>{_fmt(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _heat(value: float, peak: float) -> str:
    if peak <= 0 or value <= 0:
        return ""
    share = min(1.0, value / peak)
    light = int(97 - 52 * share)
    return f"background:hsl(210,70%,{light}%)" + (";color:#fff" if light < 60 else "")


def _reasons(counts: dict[str, int]) -> str:
    return reasons(counts) or "-"


# -- sections -----------------------------------------------------------------------------------------------------

def _funnel(data: ReportData) -> str:
    if not data.funnel:
        return _section("funnel", _not_run("no stage has run yet: fusekit ingest NAME --source PATH"))
    labels, values = [], []
    for stage in data.funnel:
        if not labels:
            labels.append(f"{stage.name}: in")
            values.append(stage.entered)
        labels.append(f"{stage.name}: out")
        values.append(stage.kept)
    parts = [charts.hbars(labels, values, "rows at each stage (all datasets)")]
    names = [s.name for s in data.funnel]
    for missing in [m for m in ("faces", "dedupe", "balance") if m not in names]:
        parts.append(_not_run(f"{missing}: not run"))
    parts.append('<div class="row">' + "".join(f"<div>{_stage_table(stage)}</div>" for stage in data.funnel)
                 + "</div>")
    return _section("funnel", "".join(parts))


def _stage_table(stage: Stage) -> str:
    others = sorted({k for r in stage.rows for k in r.other})
    rows = [[r.dataset, r.entered, r.kept, sum(r.dropped.values()), _reasons(r.dropped),
             *(r.other.get(k, 0) for k in others)] for r in stage.rows]
    rows.append(["total", stage.entered, stage.kept, sum(sum(r.dropped.values()) for r in stage.rows),
                 _reasons(_sum_dicts(r.dropped for r in stage.rows)),
                 *(sum(r.other.get(k, 0) for r in stage.rows) for k in others)])
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in stage.notes)
    return (f'<h3>{escape(stage.name)}</h3><p class="note">{escape(stage.what)}</p>'
            + table(["dataset", "in", "out", "dropped", "by reason", *others], rows,
                    cls=f"funnel-{stage.name.split()[0]}", text=[4])
            + notes)


def _sum_dicts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _classes(data: ReportData) -> str:
    c = data.classes
    if c is None:
        return _section("classes", _not_run("faces: not run (classes are counted on faces)"))
    rows = []
    for d in c["datasets"]:
        row = [d]
        for cls in c["classes"]:
            b, a = c["before"].get(f"{d}|{cls}", 0), c["after"].get(f"{d}|{cls}", 0)
            row.append(f"{b} → {a}" if c["balanced"] else b)
        rows.append(row)
    totals = ["total"]
    for cls in c["classes"]:
        b = sum(c["before"].get(f"{d}|{cls}", 0) for d in c["datasets"])
        a = sum(c["after"].get(f"{d}|{cls}", 0) for d in c["datasets"])
        totals.append(f"{b} → {a}" if c["balanced"] else b)
    rows.append(totals)
    note = (f"cells: {c['basis']} → shard rows (every split, augmented copies included)" if c["balanced"]
            else f"cells: {c['basis']}")
    body = f'<p class="note">{escape(note)}</p>' + table(["dataset", *c["classes"]], rows)
    if not c["balanced"]:
        body += _not_run("balance: not run")
    return _section("classes", body)


def _balance(data: ReportData) -> str:
    c = data.classes
    if c is None:
        return _section("balance", _not_run("faces: not run"))
    classes = c["classes"]
    series = [(c["basis"], [sum(c["before"].get(f"{d}|{k}", 0) for d in c["datasets"]) for k in classes])]
    if c["balanced"]:
        for split in ("train", "val", "test"):
            values = [c["after_split"].get(f"{split}|{k}", 0) for k in classes]
            if any(values):
                series.append((f"{split} rows", values))
    parts = [charts.bars(classes, series, "faces per class, before and after balancing")]
    per_dataset = [("before", [sum(c["before"].get(f"{d}|{k}", 0) for k in classes) for d in c["datasets"]])]
    if c["balanced"]:
        per_dataset.append(("after", [sum(c["after"].get(f"{d}|{k}", 0) for k in classes) for d in c["datasets"]]))
    parts.append(charts.bars(c["datasets"], per_dataset, "faces per dataset, before and after balancing",
                             width=420))
    body = '<div class="charts">' + "".join(parts) + "</div>"
    card = data.dataset_card
    if card is not None:
        body += (f'<p class="note">training target per class: {card.get("target")}, strategy '
                 f'{escape(str((card.get("settings") or {}).get("strategy")))}; {card.get("rows", 0):,} rows</p>')
    else:
        body += _not_run("balance: not run")
    return _section("balance", body)


def _duplicates(data: ReportData) -> str:
    d = data.duplicates
    if d is None:
        return _section("duplicates", _not_run("dedupe: not run"))
    names = d["datasets"]
    peak = max([v for row in d["matrix"].values() for v in row.values()] + [0])
    rows = [[a, *((d["matrix"][a][b], _heat(d["matrix"][a][b], peak)) for b in names)] for a in names]
    body = (f'<p class="note">{d["groups"]:,} duplicate groups holding {d["faces"]:,} faces. A cell counts the groups '
            f"that hold faces of both datasets; the diagonal, groups with two or more faces of one dataset.</p>"
            + table(["", *names], rows, cls="dup-matrix"))
    return _section("duplicates", body)


def _grid(label: str, thumbs) -> str:
    imgs = "".join(f'<img src="{t.uri}" alt="{escape(t.label)}" title="{escape(t.face_id)} ({escape(t.dataset)}, '
                   f'{escape(t.label)})">' for t in thumbs)
    return f'<div class="grid"><span>{escape(label)}</span>{imgs}</div>'


def _samples(data: ReportData) -> str:
    if data.samples is None:
        return _section("samples", _not_run("faces: not run"))
    what = "faces kept by dedupe" if data.duplicates is not None else "faces"
    by_class = "".join(_grid(k.split(":", 1)[1], v) for k, v in data.samples.items() if k.startswith("class:"))
    by_source = "".join(_grid(k.split(":", 1)[1], v) for k, v in data.samples.items() if k.startswith("source:"))
    return _section("samples", f'<p class="note">aligned {what}, spread over sources (per class) and over classes '
                               f"(per source)</p><h3>per class</h3>{by_class}<h3>per source</h3>{by_source}")


def _crawl(data: ReportData) -> str:
    c = data.crawl
    if c is None:
        return _section("crawl", _not_run("crawl: not run (fusekit crawl --emotion E)"))
    deduped = any(r.kept is not None for r in c["rows"])
    rows = [[r.engine, r.emotion, r.keyword, r.pictures, r.faces, *([r.kept] if deduped else [])] for r in c["rows"]]
    body = table(["engine", "emotion", "keyword", "pictures", "faces", *(["kept by dedupe"] if deduped else [])],
                 rows, left=3)
    labels = [f"{r.keyword}" for r in c["rows"]]
    series = [("pictures", [r.pictures for r in c["rows"]]), ("faces", [r.faces for r in c["rows"]])]
    if deduped:
        series.append(("kept", [r.kept or 0 for r in c["rows"]]))
    body += charts.bars(labels, series, "crawl yield per keyword", width=max(400, 90 * len(labels) + 160))
    if c["rejects"]:
        body += "<h3>URLs rejected</h3>" + table(["engine / keyword", "rejected", "by reason"],
                                                  [[k, sum(v.values()), _reasons(v)]
                                                   for k, v in c["rejects"].items()], text=[2])
    return _section("crawl", body)


def _review(data: ReportData) -> str:
    r = data.review
    parts = []
    if r["dedupe_review"] is not None:
        waiting = sum(r["dedupe_review"].values())
        parts.append(f"<p>dedupe sent {waiting:,} faces to review ({escape(_reasons(r['dedupe_review']))}).</p>")
    state = r["progress"]
    if state is None:
        parts.append('<p class="note no-reviews">no reviews yet (fusekit audit queues faces, fusekit review '
                     'records the verdicts)</p>')
        return _section("review", "".join(parts))
    if state.queued is None:
        parts.append('<p class="note">no audit queue (fusekit audit)</p>')
    else:
        left = state.left()
        parts.append(f'<p class="queue">audit queue: {state.faces_queued:,} faces queued, {state.faces_done:,} done, '
                     f'{state.faces_queued - state.faces_done:,} left</p>')
        rows = [(reason, n, state.done[reason], left[reason]) for reason, n in state.queued.items()]
        rows.append(("all", state.faces_queued, state.faces_done, state.faces_queued - state.faces_done))
        parts.append(table(["reason", "queued", "done", "left"], rows))
    kinds = state.verdicts
    parts.append(f'<p class="verdicts">verdicts: {sum(kinds.values()):,} faces, {state.entries:,} entries in the '
                 'journal</p>')
    parts.append(table(["verdict", "faces"], [("accepted", kinds["accept"]), ("relabelled", kinds["relabel"]),
                                              ("rejected", kinds["reject"])]))
    return _section("review", "".join(parts))


def _runs(data: ReportData) -> str:
    if not data.runs:
        return _section("runs", _not_run("train: not run (fusekit train --data DATASET --model M)"))
    return _section("runs", "".join(_run(r) for r in data.runs))


def _run(run: RunData) -> str:
    cfg = run.config
    state = run.state
    head = (f'<h3 id="run-{escape(run.name)}">{escape(run.name)}</h3><p class="note">model '
            f'{escape(str(cfg.get("model")))}, {cfg.get("input_size")} px x {cfg.get("channels")}, '
            f'{escape(str(cfg.get("optimizer")))} lr {cfg.get("lr")}, {state.get("epochs_done", 0)} of '
            f'{cfg.get("epochs")} epochs, best epoch {state.get("best_epoch", 0)}</p>')
    parts = [head]
    if run.error is not None:
        parts.append(f'<p class="note">this run folder could not be read: {escape(run.error)}</p>')
    if run.history:
        epochs = [h["epoch"] for h in run.history]
        curves = [charts.lines(epochs, [("train", [h.get("loss") for h in run.history]),
                                        ("validation", [h.get("val_loss") for h in run.history])], "loss"),
                  charts.lines(epochs, [("train", [h.get("accuracy") for h in run.history]),
                                        ("validation", [h.get("val_accuracy") for h in run.history])], "accuracy")]
        parts.append('<div class="charts curves">' + "".join(curves) + "</div>")
    else:
        parts.append(_not_run("no epoch finished yet"))
    if not run.evals:
        parts.append(_not_run(f"evaluate: not run (fusekit evaluate --run {run.name} --by-source)"))
    for ev in run.evals:
        m = ev.metrics
        parts.append(f"<h3>{escape(run.name)} on {escape(ev.split)}</h3><p>accuracy {m.get('accuracy', 0):.3f}, "
                     f"macro-F1 {m.get('macro_f1', 0):.3f}, balanced accuracy {m.get('balanced_accuracy', 0):.3f} "
                     f"({m.get('n', 0):,} images)</p>")
        peak = max([v for row in ev.confusion for v in row] + [0])
        rows = [[ev.classes[i], *((v, _heat(v, peak)) for v in row)] for i, row in enumerate(ev.confusion)]
        parts.append('<p class="note">confusion matrix: rows true, columns predicted</p>'
                     + table(["true \\ predicted", *ev.classes], rows, cls="confusion"))
        if ev.by_source:
            parts.append(table(["source", "images", "accuracy", "balanced accuracy", "macro-F1"],
                               [[s["source"], s["n"], s["accuracy"], s["balanced_accuracy"], s["macro_f1"]]
                                for s in ev.by_source], cls="by-source"))
            parts.append(charts.bars([s["source"] for s in ev.by_source],
                                     [("accuracy", [s["accuracy"] for s in ev.by_source])],
                                     f"accuracy per source ({ev.split})", width=max(300, 90 * len(ev.by_source) + 160),
                                     height=200))
        else:
            parts.append(_not_run("per-source accuracy: evaluate with --by-source"))
    return "".join(parts)


def _explain(data: ReportData) -> str:
    shown = [r for r in data.runs if r.explain]
    if not shown:
        hint = data.runs[0].name if data.runs else "RUN"
        return _section("explain", _not_run(f"explain: not run (fusekit explain --run {hint})"))
    parts = []
    for run in shown:
        info = run.explain_info or {}
        method = {"gradcam": "Grad-CAM", "hirescam": "HiResCAM (Grad-CAM's element-wise form)"}.get(
            str(info.get("method")), str(info.get("method")))
        parts.append(f"<h3>{escape(run.name)}</h3><p class=\"note\">{escape(method)} on layer "
                     f"{escape(str(info.get('layer')))} ({escape(str(info.get('backend')))}), for each face's true "
                     f"class, over faces of the {escape(str(info.get('split')))} split: the face, then its heat map "
                     f"(red = what raised the class score)</p>")
        parts.append('<div class="row">' + "".join(
            f'<figure><img src="{uri}" alt="Grad-CAM {escape(cls)}"><figcaption>{escape(cls)}</figcaption></figure>'
            for cls, uri in run.explain) + "</div>")
    return _section("explain", "".join(parts))
