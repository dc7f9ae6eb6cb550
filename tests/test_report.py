"""`fusekit report` (issue 17 item 5): one self-contained HTML page per workspace.

Fast: a workspace written table by table (known counts: funnel, duplicates between datasets, review progress).
Slow: the demo's workspace (every stage, a crawl, a tiny run, its maps), rendered in headless Chromium offline:
every section is there, every picture decodes, and no request leaves the page.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from helpers import call_cli, image_bytes, run_cli

from fusekit import reviews
from fusekit.records import DECISIONS_SCHEMA, FACES_SCHEMA, IMAGES_SCHEMA, REJECTS_SCHEMA, REVIEW_QUEUE_SCHEMA
from fusekit.workspace import Workspace, write_parquet_atomic

SECTION_IDS = ("funnel", "classes", "balance", "duplicates", "samples", "crawl", "review", "runs", "explain")


def _write(ws: Workspace, table: str, unit: str, rows: list[dict], schema: pa.Schema | None) -> None:
    data = pa.Table.from_pylist(rows, schema=schema) if schema is not None else pa.Table.from_pylist(rows)
    write_parquet_atomic(data, ws.unit_dir(table, unit) / "part-00000.parquet")


@pytest.fixture
def small(tmp_path) -> Workspace:
    """Two datasets: alpha (4 images + 2 rejects, 4 faces), beta (4 images + 1 reject, 3 faces + 1 no_face);
    duplicate groups g1 = {alpha/a0, beta/b0}, g2 = {alpha/a1, alpha/a2}; one face to review; an audit queue of 4
    faces and 7 journal entries (see _review_journal)."""
    ws = Workspace(tmp_path / "ws").ensure()
    labels = {"alpha": ["happy", "happy", "sad", "fear"], "beta": ["happy", "sad", "sad", "angry"]}
    for d, names in labels.items():
        _write(ws, "images", f"{d}--v1", [{"id": f"{d}/v1/{i}", "dataset": d, "variant": "v1", "label": n,
                                           "split": "train"} for i, n in enumerate(names)], IMAGES_SCHEMA)
        faces = [{"id": f"{d}/v1/{i}#0", "image_id": f"{d}/v1/{i}", "dataset": d, "variant": "v1", "label": n,
                  "image": {"bytes": image_bytes(10 * len(d) + i, mode="RGB"), "path": f"{i}.png"}}
                 for i, n in enumerate(names) if (d, i) != ("beta", 3)]
        _write(ws, "faces", f"{d}--v1", faces, FACES_SCHEMA)
    _write(ws, "rejects", "alpha--v1", [
        {"id": "alpha/v1/x", "stage": "ingest", "dataset": "alpha", "variant": "v1", "reason": "unlabelled"},
        {"id": "alpha/v1/y", "stage": "ingest", "dataset": "alpha", "variant": "v1", "reason": "stray_file"}],
        REJECTS_SCHEMA)
    _write(ws, "rejects", "beta--v1", [
        {"id": "beta/v1/x", "stage": "ingest", "dataset": "beta", "variant": "v1", "reason": "malformed_row"}],
        REJECTS_SCHEMA)
    _write(ws, "face_rejects", "beta--v1", [
        {"id": "beta/v1/3", "stage": "faces", "dataset": "beta", "variant": "v1", "reason": "no_face"}],
        REJECTS_SCHEMA)
    decisions = [("alpha/v1/0#0", "alpha", "happy", "keep", None, "g1"),
                 ("alpha/v1/1#0", "alpha", "happy", "keep", None, "g2"),
                 ("alpha/v1/2#0", "alpha", "sad", "drop", "exact_duplicate", "g2"),
                 ("alpha/v1/3#0", "alpha", "fear", "keep", None, None),
                 ("beta/v1/0#0", "beta", "happy", "drop", "near_duplicate", "g1"),
                 ("beta/v1/1#0", "beta", "sad", "review", "label_conflict", None),
                 ("beta/v1/2#0", "beta", "sad", "keep", None, None)]
    _write(ws, "decisions", "all", [dict(zip(("face_id", "dataset", "label", "decision", "reason", "dup_group"), d),
                                         flags=[]) for d in decisions], DECISIONS_SCHEMA)
    _review_journal(ws)
    return ws


def _review_journal(ws: Workspace) -> None:
    """A queue as `fusekit audit` writes it (label_issue 2, low_score 1, label_conflict 1) and verdicts through the
    journal the review server appends to: alpha/a0's reject is undone (no verdict), alpha/a1's reject is overruled
    by an accept, beta/b2 (not queued) is accepted. Counted: 4 queued, 3 done, 1 left (label_issue); 4 faces with
    a verdict: 3 accepted, 1 relabelled, 0 rejected; 7 entries."""
    queue = [("alpha/v1/0#0", "alpha", "happy", "label_issue"), ("alpha/v1/1#0", "alpha", "happy", "label_issue"),
             ("alpha/v1/3#0", "alpha", "fear", "low_score"), ("beta/v1/1#0", "beta", "sad", "label_conflict")]
    _write(ws, "review_queue", "all", [
        {"face_id": f, "dataset": d, "split": "train", "label": label, "reason": reason, "reasons": [reason],
         "rank": rank, "score": 0.1, "top_classes": ["sad", label, "fear"], "top_probs": [0.6, 0.3, 0.1],
         "features": "builtin:hog+pixels"} for rank, (f, d, label, reason) in enumerate(queue, 1)],
        REVIEW_QUEUE_SCHEMA)
    journal = reviews.Journal(ws)
    for entry in ({"face_id": "beta/v1/1#0", "verdict": "accept", "was_label": "sad"},
                  {"face_id": "alpha/v1/3#0", "verdict": "relabel", "label": "happy", "was_label": "fear"},
                  {"face_id": "alpha/v1/0#0", "verdict": "reject", "was_label": "happy"},
                  {"face_id": "alpha/v1/0#0", "verdict": "undo", "undoes": 3},
                  {"face_id": "alpha/v1/1#0", "verdict": "reject", "was_label": "happy"},
                  {"face_id": "alpha/v1/1#0", "verdict": "accept", "was_label": "happy"},
                  {"face_id": "beta/v1/2#0", "verdict": "accept", "was_label": "sad"}):
        journal.append(entry)


def test_collect_counts_every_stage_and_the_duplicates_between_datasets(small):
    from fusekit.report.collect import collect

    data = collect(small)
    stages = {s.name: {r.dataset: r for r in s.rows} for s in data.funnel}
    assert list(stages) == ["ingest + crawl", "faces", "dedupe"]  # no balance: no dataset folder
    alpha = stages["ingest + crawl"]["alpha"]
    assert (alpha.entered, alpha.kept, alpha.dropped) == (6, 4, {"stray_file": 1, "unlabelled": 1})
    beta = stages["faces"]["beta"]
    assert (beta.entered, beta.kept, beta.dropped) == (4, 3, {"no_face": 1})
    assert stages["dedupe"]["alpha"].dropped == {"exact_duplicate": 1} and stages["dedupe"]["alpha"].kept == 2 + 1
    assert stages["dedupe"]["beta"].other == {"to review": 1}
    assert data.duplicates["matrix"] == {"alpha": {"alpha": 1, "beta": 1}, "beta": {"alpha": 1, "beta": 0}}
    assert data.duplicates["groups"] == 2
    assert data.classes["before"] == {"alpha|happy": 2, "alpha|fear": 1, "beta|sad": 1}  # what dedupe kept
    assert [t.face_id for t in data.samples["class:happy"]] == ["alpha/v1/0#0", "alpha/v1/1#0"]
    assert [t.face_id for t in data.samples["source:beta"]] == ["beta/v1/2#0"]
    assert all(t.uri.startswith("data:image/jpeg;base64,") for v in data.samples.values() for t in v)
    assert data.review["dedupe_review"] == {"label_conflict": 1}
    state = data.review["progress"]
    assert state.queued == {"label_issue": 2, "low_score": 1, "label_conflict": 1}
    assert state.done == {"label_issue": 1, "low_score": 1, "label_conflict": 1}
    assert state.left() == {"label_issue": 1, "low_score": 0, "label_conflict": 0}
    assert state.verdicts == {"accept": 3, "relabel": 1, "reject": 0} and state.entries == 7
    assert data.crawl is None and data.runs == [] and data.dataset_card is None


def test_page_is_self_contained_and_the_same_bytes_every_time(small, capsys):
    out = small.root / "out" / "page.html"
    code, stdout, err = call_cli(capsys, "report", "-o", str(out), workspace=small.root)
    assert code == 0, err
    assert stdout.strip() == f"report: {out}"
    page = out.read_text(encoding="utf-8")
    for sid in SECTION_IDS:
        assert len(re.findall(f'<section id="{sid}">', page)) == 1, sid
    sections = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.DOTALL))
    for sid, says in (("crawl", "crawl: not run"), ("runs", "train: not run"), ("explain", "explain: not run"),
                      ("balance", "balance: not run")):
        assert says in sections[sid], sid
    review = sections["review"]
    assert "no reviews yet" not in review and "dedupe sent 1 faces to review" in review
    # the numbers `fusekit status` gives, from the same journal
    assert reviews.status_lines(small) == [
        "review: 4 faces queued, 3 done, 1 left (label_issue 2, low_score 1, label_conflict 1)",
        "  verdicts: 4 faces (3 accepted, 1 relabelled, 0 rejected), 7 entries in the journal"]
    assert "audit queue: 4 faces queued, 3 done, 1 left" in review
    cells = [re.sub(r"<[^>]+>", "|", row).strip("|").replace("||", "|")
             for row in re.findall(r"<tr>(.*?)</tr>", review)]
    assert cells == ["reason|queued|done|left", "label_issue|2|1|1", "low_score|1|1|0", "label_conflict|1|1|0",
                     "all|4|3|1", "verdict|faces", "accepted|3", "relabelled|1", "rejected|0"]
    assert "verdicts: 4 faces, 7 entries in the journal" in review
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    # per class: happy 2, sad 1, fear 1; per source: alpha 3, beta 1
    assert len(sources) == page.count("<img ") == 2 + 1 + 1 + 3 + 1
    assert all(s.startswith("data:image/") for s in sources)
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert "default-src 'none'" in page
    code, _, err = call_cli(capsys, "report", workspace=small.root)  # default place, same bytes
    assert code == 0, err
    assert (small.root / "report.html").read_bytes() == out.read_bytes()


def test_a_workspace_with_nothing_yet_says_not_run_everywhere(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws").ensure()
    code, _, err = call_cli(capsys, "report", workspace=ws.root)
    assert code == 0, err
    page = (ws.root / "report.html").read_text(encoding="utf-8")
    assert page.count('class="note not-run"') >= len(SECTION_IDS) - 1 and "no reviews yet" in page


def test_report_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    code, _, err = call_cli(capsys, "report", workspace=tmp_path / "none")
    assert code == 2 and err.strip() == f"Error: no workspace at {tmp_path / 'none'} (run fusekit ingest first)"
    Workspace(tmp_path / "ws").ensure()
    code, _, err = call_cli(capsys, "report", "-o", str(tmp_path), workspace=tmp_path / "ws")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a folder" in err


# -- slow: the demo's workspace in headless Chromium -----------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    code, out, err = run_cli("demo", "--out", str(root))
    assert code == 0, err
    return Workspace(root / "workspace"), out


@pytest.mark.slow
def test_demo_ends_with_the_path_of_its_report(demo):
    ws, out = demo
    assert out.strip().splitlines()[-1] == f"report: {ws.root / 'report.html'}"
    page = (ws.root / "report.html").read_text(encoding="utf-8")
    runs = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.DOTALL))["runs"]
    assert "demo-tiny on test" in runs and 'class="confusion"' in runs and 'class="by-source"' in runs


@pytest.mark.slow
def test_demo_report_renders_offline_in_headless_chromium(demo, tmp_path):
    import headless

    reason = headless.missing()
    if reason is not None:
        pytest.fail(reason)  # CI installs chromium and chromium-driver: a missing browser is a failure, not a skip
    ws, _ = demo
    path = ws.root / "report.html"
    html = path.read_text(encoding="utf-8")
    with headless.chromium() as driver:
        driver.get(path.as_uri())
        found = driver.execute_script(
            "return Array.from(document.querySelectorAll('section')).map(s => s.id)")
        assert found == list(SECTION_IDS)
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        explain = [alt for _, _, alt in images if alt.startswith("Grad-CAM ")]
        # thumbnails: 8 classes (contempt included) and 4 sources; maps: the 7 classes of the test split
        assert len(images) == html.count("<img ") and len(explain) == 7
        assert len(images) - len(explain) >= 4 * 3 + 7  # at least a few faces per source and one per class
        assert all(done and width > 0 for done, width, _ in images), images
        counts = driver.execute_script("""return {
            svg: document.querySelectorAll('svg').length,
            curves: document.querySelectorAll('#runs .curves svg').length,
            crawl_rows: document.querySelectorAll('#crawl table tr').length,
            dup_cells: document.querySelectorAll('#duplicates table.dup-matrix td').length,
            funnel_tables: document.querySelectorAll('#funnel table').length,
            resources: performance.getEntriesByType('resource').map(e => e.name)}""")
        assert counts["curves"] == 2 and counts["svg"] >= 2 + 2 + 1 + 1 + 1  # funnel, balance x2, crawl, by-source
        assert counts["funnel_tables"] == 4  # ingest + crawl, faces, dedupe, balance
        assert counts["dup_cells"] == 4 * 5  # 4 datasets: name + 4 cells per row
        assert counts["crawl_rows"] >= 1 + 4  # the stand-in's 4 searches
        assert all(name.startswith("data:") for name in counts["resources"]), counts["resources"]
        requests = headless.requests_made(driver)
        assert requests and requests[0] == path.as_uri()
        assert all(u == path.as_uri() or u.startswith("data:") for u in requests), [u[:80] for u in requests]
        assert "no reviews yet" in driver.find_element("id", "review").text
        shot = headless.full_page_png(driver, tmp_path / "report.png")
        # the control: the same page with one picture from outside is caught by both checks above
        tampered = tmp_path / "tampered.html"
        tampered.write_text(html.replace("</main>", '<img src="http://example.com/x.png" alt="x"></main>'),
                            encoding="utf-8")
        driver.get(tampered.as_uri())
        assert "http://example.com/x.png" in headless.requests_made(driver)
        assert driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)") == [
            "http://example.com/x.png"]
        assert driver.execute_script("return document.images[document.images.length - 1].naturalWidth") == 0
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size[0] == 1000 and image.size[1] > 600


@pytest.mark.slow
def test_demo_report_again_is_the_same_bytes(demo, tmp_path):
    ws, _ = demo
    code, _, err = run_cli("report", "-o", str(tmp_path / "again.html"), workspace=ws.root)
    assert code == 0, err
    assert (tmp_path / "again.html").read_bytes() == (ws.root / "report.html").read_bytes()


def test_runs_show_curves_confusion_and_sources_and_a_damaged_run_is_said(small, capsys):
    """Run folders written as `fusekit train` / `evaluate` leave them (fusekit.train.runs), one of them damaged."""
    import json

    run = small.root / "runs" / "r1"
    (run / "eval" / "test").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "tiny", "input_size": 24, "channels": 1, "epochs": 2,
                                                 "optimizer": "adam", "lr": 0.001}))
    (run / "state.json").write_text(json.dumps({"epochs_done": 2, "best_epoch": 2}))
    (run / "history.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy\n1,1.9,0.2,1.95,0.1\n"
                                     "2,1.5,0.4,1.7,0.3\n")
    (run / "eval" / "test" / "metrics.json").write_text(json.dumps({"n": 5, "accuracy": 0.6, "macro_f1": 0.5,
                                                                    "balanced_accuracy": 0.55}))
    (run / "eval" / "test" / "confusion.csv").write_text("true\\predicted,happy,sad\nhappy,2,1\nsad,1,1\n")
    (run / "eval" / "test" / "by_source.csv").write_text(
        "source,n,accuracy,balanced_accuracy,macro_f1\nalpha,3,0.666667,0.5,0.4\nbeta,2,0.5,0.5,0.33\n")
    broken = small.root / "runs" / "r2"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    code, _, err = call_cli(capsys, "report", workspace=small.root)
    assert code == 0, err
    page = (small.root / "report.html").read_text(encoding="utf-8")
    runs = dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.DOTALL))["runs"]
    assert runs.count("<svg") == 2 + 1  # loss, accuracy, accuracy per source
    assert "r1 on test" in runs and "accuracy 0.600, macro-F1 0.500" in runs
    confusion = re.search(r'<table class="confusion">(.*?)</table>', runs, re.DOTALL).group(1)
    assert re.findall(r"<td[^>]*>(\d+)</td>", confusion) == ["2", "1", "1", "1"]
    assert ">alpha</td><td>3</td><td>0.667</td>" in runs
    assert "r2" in runs and "this run folder could not be read: JSONDecodeError" in runs
