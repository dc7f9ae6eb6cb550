"""`fusekit crawl` against a fake engine on 127.0.0.1, through the real icrawler threads.

Every test refuses every non-loopback address (``only_addresses``), uses short timeouts and asserts exact rows,
rejects and request counts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_engine import FakeEngine
from helpers import call_cli

from fusekit import api
from fusekit.crawl import CrawlConfig, CrawlFoundNothing, run_crawl, status_lines
from fusekit.records import IMAGES_SCHEMA, REJECT_REASONS, REJECTS_SCHEMA
from fusekit.workspace import Workspace

UNIT = "crawl--bing"


def keywords_file(tmp_path: Path, emotions: dict[str, list[str]], template: str = "{keyword} face") -> Path:
    lines = ["version: 1", "templates:", f'  default: "{template}"', "emotions:"]
    lines += [f"  {emotion}: [{', '.join(words)}]" for emotion, words in emotions.items()]
    path = tmp_path / "kw.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def config(engine: FakeEngine, keywords: Path, **overrides) -> CrawlConfig:
    settings = dict(emotion="all", engine="bing", max_per_keyword=50, keywords=keywords, faces=False, interval=0.0,
                    threads=2, timeout=0.3, max_seconds=5.0, max_bytes=200_000, max_tries=3, backoff=0.01,
                    retry_after_max=1.0, min_side=32, endpoint=f"{engine.base}/bing/images/async",
                    allow_addresses=("127.0.0.1/32",), only_addresses=("127.0.0.1/32",), trust_env=False)
    settings.update(overrides)
    return CrawlConfig(**settings)


def images(ws: Workspace) -> list[dict]:
    rows = ws.read("images", IMAGES_SCHEMA).to_pylist()
    for row in rows:
        row["extra"] = json.loads(row["extra"])
    return rows


def rejects(ws: Workspace) -> dict[str, str]:
    return {r["source_path"]: r["reason"] for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}


FAULTS = [
    "/img/ok/a.jpg",  # kept
    "/img/fail-500-1/b.jpg",  # 500 once, then kept
    "/img/fail-503-99/c.jpg",  # 503 forever
    "/img/slow-1-99/d.jpg",  # always slower than the 0.3 s timeout
    "/img/slow-1-1/e.jpg",  # one timeout, then kept
    "/img/loop/f.jpg",  # redirect loop
    "/img/html/g.jpg",  # HTML served as .jpg
    "/img/trunc/h.jpg",  # truncated JPEG
    "/img/big-300000/i.jpg",  # oversize, with Content-Length
    "/img/bigchunked-300000/j.jpg",  # oversize, chunked
    "/private/k.jpg",  # robots.txt disallows /private/
    "/img/noai/l.jpg",  # X-Robots-Tag: noai
    "/img/otherbotnoai/m.jpg",  # X-Robots-Tag for another crawler: kept
    "/img/same/n1.jpg",  # one picture under three URLs
    "/img/same/n2.jpg",
    "/img/same/n3.jpg",
    "http://example.com/o.jpg",  # not loopback: refused without a request (and without DNS)
    "http://10.1.2.3/p.jpg",  # private
    "ftp://127.0.0.1/q.jpg",  # not http(s)
    "/img/tiny/r.jpg",  # 16x16
    "/img/redirect-private/s.jpg",  # redirects to a private address
    "/img/redirect-ok/t.jpg",  # redirects to a picture: kept
    "/img/ok/a.jpg",  # the same URL twice on a page: once
    "/img/missing/u.jpg",  # 404
    "/img/retryafter-1-1/v.jpg",  # 503 + Retry-After: 1 once, then kept
    "/img/retryafter-3600-9/w.jpg",  # Retry-After beyond the limit: give up at once
]


def test_faults_exact_rows_rejects_and_requests(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    with FakeEngine({"fear face": FAULTS}) as fake:
        report = run_crawl(ws, config(fake, keywords_file(tmp_path, {"fear": ["fear"]})))
        fetched = {p: fake.images_fetched(p) for p in FAULTS if "://" not in p}
        times = [t for t, p in fake.times if p == "/img/retryafter-1-1/v.jpg"]
        robots = fake.images_fetched("/robots.txt")
        pages = fake.count(lambda p: p.startswith("/bing/"))

    rows = images(ws)
    assert sorted(r["source_path"] for r in rows) == sorted(fake.url(p) for p in [
        "/img/ok/a.jpg", "/img/fail-500-1/b.jpg", "/img/slow-1-1/e.jpg", "/img/otherbotnoai/m.jpg",
        "/img/same/n1.jpg", "/img/redirect-ok/t.jpg", "/img/retryafter-1-1/v.jpg"])
    assert {r["label"] for r in rows} == {"fear"} and {r["label_source"] for r in rows} == {"crawl"}
    assert {r["dataset"] for r in rows} == {"crawl"} and {r["variant"] for r in rows} == {"bing"}
    for row in rows:
        assert row["id"] == f"crawl/bing/{row['sha256'][:24]}"
        assert row["image"]["bytes"] and len(row["image"]["bytes"]) == row["extra"]["provenance"][0]["bytes"]
        assert (row["width"], row["height"]) == (96, 96)
        first = row["extra"]["provenance"][0]
        assert first["engine"] == "bing" and first["keyword"] == "fear" and first["query"] == "fear face"
        assert first["url"] == row["source_path"] and first["rank"] == row["source_row"]
        assert first["http_status"] == 200 and first["content_type"] == "image/jpeg"
        assert first["sha256"] == row["sha256"] and first["page_url"].startswith(fake.base + "/page/img/")
        assert "q=fear+face" in first["query_url"] and first["time"].endswith("Z")
    same = next(r for r in rows if "/same/" in r["source_path"])
    assert [p["url"] for p in same["extra"]["provenance"]] == [fake.url(f"/img/same/n{i}.jpg") for i in (1, 2, 3)]
    assert same["extra"]["labels"] == ["fear"] and same["extra"]["label_conflict"] is False
    redirected = next(r for r in rows if "redirect-ok" in r["source_path"])
    assert redirected["extra"]["provenance"][0]["final_url"] == fake.url("/img/ok/t.jpg")

    assert rejects(ws) == {
        fake.url("/img/fail-503-99/c.jpg"): "http_error",
        fake.url("/img/slow-1-99/d.jpg"): "timeout",
        fake.url("/img/loop/f.jpg"): "too_many_redirects",
        fake.url("/img/html/g.jpg"): "not_an_image",
        fake.url("/img/trunc/h.jpg"): "truncated",
        fake.url("/img/big-300000/i.jpg"): "too_large",
        fake.url("/img/bigchunked-300000/j.jpg"): "too_large",
        fake.url("/private/k.jpg"): "robots_disallowed",
        fake.url("/img/noai/l.jpg"): "opted_out",
        "http://example.com/o.jpg": "address_refused",
        "http://10.1.2.3/p.jpg": "address_refused",
        "ftp://127.0.0.1/q.jpg": "unsupported_scheme",
        fake.url("/img/tiny/r.jpg"): "too_small",
        fake.url("/img/redirect-private/s.jpg"): "address_refused",
        fake.url("/img/missing/u.jpg"): "http_error",
        fake.url("/img/retryafter-3600-9/w.jpg"): "http_error",
    }
    assert set(rejects(ws).values()) <= set(REJECT_REASONS)
    details = {r["source_path"]: r["detail"] for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    assert details[fake.url("/img/fail-503-99/c.jpg")] == "HTTP 503 after 3 tries"
    assert details[fake.url("/img/missing/u.jpg")] == "HTTP 404 after 1 try"
    assert "Retry-After 3600 s exceeds the 1 s limit" in details[fake.url("/img/retryafter-3600-9/w.jpg")]

    assert fetched == {
        "/img/ok/a.jpg": 1, "/img/fail-500-1/b.jpg": 2, "/img/fail-503-99/c.jpg": 3, "/img/slow-1-99/d.jpg": 3,
        "/img/slow-1-1/e.jpg": 2, "/img/loop/f.jpg": 6, "/img/html/g.jpg": 1, "/img/trunc/h.jpg": 1,
        "/img/big-300000/i.jpg": 1, "/img/bigchunked-300000/j.jpg": 1, "/private/k.jpg": 0, "/img/noai/l.jpg": 1,
        "/img/otherbotnoai/m.jpg": 1, "/img/same/n1.jpg": 1, "/img/same/n2.jpg": 1, "/img/same/n3.jpg": 1,
        "/img/tiny/r.jpg": 1, "/img/redirect-private/s.jpg": 1, "/img/redirect-ok/t.jpg": 1, "/img/missing/u.jpg": 1,
        "/img/retryafter-1-1/v.jpg": 2, "/img/retryafter-3600-9/w.jpg": 1,
    }
    assert times[1] - times[0] >= 0.95  # Retry-After: 1 was honoured
    assert robots == 1 and pages == 2  # one robots.txt per run; page 2 was empty: the end of the results
    (search,) = report.searches
    assert (search.results, search.kept, search.duplicates, search.status) == (26, 7, 2, "exhausted")
    assert sum(search.rejects.values()) == 16 and report.stored_total == 7


def test_user_agent_and_interval(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    seen_agents = []
    paths = [f"/img/ok/p{i}.jpg" for i in range(4)]
    with FakeEngine({"happy face": paths}) as fake:
        import http.server

        handle = http.server.BaseHTTPRequestHandler.parse_request

        def parse_request(self):
            ok = handle(self)
            seen_agents.append(self.headers.get("User-Agent"))
            return ok

        http.server.BaseHTTPRequestHandler.parse_request = parse_request
        try:
            run_crawl(ws, config(fake, keywords_file(tmp_path, {"happy": ["happy"]}), interval=0.15, threads=4,
                                 contact="https://example.org/crawl-contact"))
        finally:
            http.server.BaseHTTPRequestHandler.parse_request = handle
        times = [t for t, _ in fake.times]
    assert len(images(ws)) == 4
    assert set(seen_agents) == {"fusekit/0.1.0 (+https://example.org/crawl-contact)"}
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 1 + 2 + 4 and min(gaps) >= 0.12  # robots, 2 pages, 4 pictures; one host, one
    # at a time (slots are 0.15 s apart in the client; arrival times at the server jitter a little)


def test_max_per_keyword_resume_and_rejected_not_refetched(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    kw = keywords_file(tmp_path, {"sad": ["sad", "sorrow"]})
    results = {"sad face": ["/img/html/x.jpg"] + [f"/img/ok/s{i}.jpg" for i in range(6)],
               "sorrow face": [f"/img/ok/t{i}.jpg" for i in range(6)]}
    with FakeEngine(results) as fake:
        first = run_crawl(ws, config(fake, kw, max_per_keyword=2, threads=1))
        assert [(s.keyword, s.kept, s.status) for s in first.searches] == [("sad", 2, "done"), ("sorrow", 2, "done")]
        assert fake.count(lambda p: p.startswith("/img/")) == 5  # html rejected + 2 + 2, nothing wasted
        before = len(fake.requests)
        again = run_crawl(ws, config(fake, kw, max_per_keyword=2, threads=1))
        assert [s.status for s in again.searches] == ["complete", "complete"]
        assert len(fake.requests) == before + 0  # nothing to do: not even a result page or robots.txt
        more = run_crawl(ws, config(fake, kw, max_per_keyword=4, threads=2))
        new_paths = [p for p, _ in fake.requests[before:] if p.startswith("/img/")]
    assert sorted(new_paths) == ["/img/ok/s2.jpg", "/img/ok/s3.jpg", "/img/ok/t2.jpg", "/img/ok/t3.jpg"]
    assert [(s.had, s.target, s.kept, s.known, s.skipped_rejected) for s in more.searches] == [
        (2, 2, 2, 2, 1), (2, 2, 2, 2, 0)]
    rows = images(ws)
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    assert sorted(p.name for p in (ws.unit_dir("images", UNIT)).glob("part-*.parquet")) == [
        f"part-{i:05d}.parquet" for i in range(4)]
    assert list(rejects(ws).values()) == ["not_an_image"]


def test_same_picture_under_two_emotions_is_stored_once_as_a_conflict(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    kw = keywords_file(tmp_path, {"angry": ["outrage"], "disgust": ["outrage", "revolt"]}, template="{keyword}")
    results = {"outrage": ["/img/ok/o1.jpg", "/img/ok/o2.jpg"], "revolt": ["/img/ok/r1.jpg", "/img/ok/o1.jpg?copy"]}
    with FakeEngine(results) as fake:
        # First run: anger only. Second run: disgust finds the same URLs, and the same picture behind another URL.
        run_crawl(ws, config(fake, kw, emotion="angry"))
        part = ws.unit_dir("images", UNIT) / "part-00000.parquet"
        assert pq.read_table(part).num_rows == 2
        report = run_crawl(ws, config(fake, kw, emotion="disgust"))
        fetched = {p: fake.count(lambda q, p=p: q == p) for p in ("/img/ok/o1.jpg", "/img/ok/o2.jpg",
                                                                   "/img/ok/o1.jpg?copy")}
    rows = {r["source_path"].rsplit("/", 1)[-1]: r for r in images(ws)}
    assert sorted(rows) == ["o1.jpg", "o2.jpg", "r1.jpg"]
    for name in ("o1.jpg", "o2.jpg"):
        extra = rows[name]["extra"]
        assert rows[name]["label"] == "angry"  # the label it was first stored with stays
        assert extra["labels"] == ["angry", "disgust"] and extra["label_conflict"] is True
    assert [(p["emotion"], p["keyword"], p["url"].rsplit("/", 1)[-1], p["fetched"])
            for p in rows["o1.jpg"]["extra"]["provenance"]] == [
        ("angry", "outrage", "o1.jpg", True), ("disgust", "outrage", "o1.jpg", False),
        ("disgust", "revolt", "o1.jpg?copy", True)]
    assert rows["r1.jpg"]["extra"]["label_conflict"] is False
    assert fetched == {"/img/ok/o1.jpg": 1, "/img/ok/o2.jpg": 1, "/img/ok/o1.jpg?copy": 1}  # known URLs: no request
    assert report.conflicts == 2
    # The part holding the angry rows was rewritten in place (no second row in a new part).
    assert pq.read_table(part).num_rows == 2 and len(images(ws)) == 3


def test_same_bytes_other_url_and_other_emotion_is_a_conflict(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    kw = keywords_file(tmp_path, {"fear": ["dread"], "surprise": ["awe"]}, template="{keyword}")
    results = {"dread": ["/img/same/a.jpg"], "awe": ["/img/same/b.jpg"]}
    with FakeEngine(results) as fake:
        run_crawl(ws, config(fake, kw))
    (row,) = images(ws)
    assert row["label"] == "fear" and row["extra"]["labels"] == ["fear", "surprise"]
    assert [p["url"] for p in row["extra"]["provenance"]] == [fake.url("/img/same/a.jpg"), fake.url("/img/same/b.jpg")]
    assert all(p["fetched"] for p in row["extra"]["provenance"])


def test_empty_result_page_is_loud_and_nothing_found_exits_1(tmp_path: Path, capsys) -> None:
    kw = keywords_file(tmp_path, {"neutral": ["nonaligned", "diaphanous"]})
    with FakeEngine({}) as fake:
        with pytest.raises(CrawlFoundNothing) as caught:
            run_crawl(Workspace(tmp_path / "ws"), config(fake, kw))
        assert [s.status for s in caught.value.report.searches] == ["empty", "empty"]
        assert caught.value.report.warnings[0].startswith("bing: 'nonaligned' (neutral): page 1 (results 1-35): "
                                                          "HTTP 200,")
        code, out, err = call_cli(capsys, "crawl", "--emotion", "neutral", "--keywords", str(kw), "--no-faces",
                                  "--interval", "0", "--endpoint", f"{fake.base}/bing/images/async",
                                  "--allow-address", "127.0.0.1", workspace=tmp_path / "ws2")
    assert code == 1
    assert "warning: bing: 'diaphanous' (neutral): page 1 (results 1-35): HTTP 200" in out
    assert err.strip() == ("Error: the crawl found nothing: 2 of 2 bing searches returned result pages with no "
                           "pictures or failed (see the warnings above); the engine may have changed its pages or "
                           "refused us")


def test_failing_result_page_and_all_rejected(tmp_path: Path) -> None:
    kw = keywords_file(tmp_path, {"happy": ["glad"]})
    with FakeEngine({"glad face": ["/img/html/a.jpg", "/img/trunc/b.jpg"]}) as fake:  # noqa: SIM117 - two steps
        with pytest.raises(CrawlFoundNothing, match=r"found nothing it could keep: 2 results on bing, every one "
                                                    r"rejected or skipped \(not_an_image 1, truncated 1\)"):
            run_crawl(Workspace(tmp_path / "ws"), config(fake, kw))
    # A result page that answers 503 forever: reported per engine and keyword, after the retries.
    with FakeEngine({}) as fake:
        fake.reply = lambda path, query, _orig=fake.reply: (
            __import__("fusekit.crawl.standin", fromlist=["Reply"]).Reply(503, b"no") if path.startswith("/bing/")
            else _orig(path, query))
        with pytest.raises(CrawlFoundNothing) as caught:
            run_crawl(Workspace(tmp_path / "ws2"), config(fake, kw))
        assert fake.count(lambda p: p.startswith("/bing/")) == 3
    (search,) = caught.value.report.searches
    assert search.status == "failed" and search.problems == ["page 1 (results 1-35): HTTP 503"]


def test_cli_crawl_and_status(tmp_path: Path, capsys) -> None:
    kw = keywords_file(tmp_path, {"happy": ["glad", "merry"], "contempt": []})
    results = {"glad face": ["/img/ok/g1.jpg", "/img/ok/g2.jpg", "/img/html/g3.jpg"],
               "merry face": ["/img/ok/m1.jpg"]}
    with FakeEngine(results) as fake:
        code, out, err = call_cli(capsys, "crawl", "-e", "all", "--keywords", str(kw), "--no-faces", "--interval",
                                  "0", "--endpoint", f"{fake.base}/bing/images/async", "--allow-address",
                                  "127.0.0.1", "--timeout", "2", workspace=tmp_path / "ws")
    assert code == 0, err
    assert "3 new pictures (3 in the workspace for these emotions), 1 rejected (not_an_image 1)" in out
    assert f"note: angry, disgust, fear, sad, surprise, neutral, contempt: no keywords in {kw}, not crawled" in out
    lines = status_lines(Workspace(tmp_path / "ws"))
    assert lines == [
        "crawled (web search; pictures / faces per keyword) - faces not run yet",
        "  bing: 3 pictures, 0 faces, 1 rejected (not_an_image 1), 0 label conflicts",
        "    happy: 3 / 0 (glad 2/0, merry 1/0)",
    ]


def test_cli_user_mistakes_exit_2(tmp_path: Path, capsys) -> None:
    kw = keywords_file(tmp_path, {"happy": ["glad"], "contempt": []})
    cases = [
        (["--emotion", "joyful"], "Error: unknown emotion 'joyful' (expected all or one of angry, disgust, fear, "
                                  "happy, sad, surprise, neutral, contempt)"),
        (["--emotion", "contempt"], f"Error: {kw} lists no keywords for contempt: add some under `emotions: "
                                    f"contempt:`"),
        (["--emotion", "happy", "--engine", "altavista"], "Error: unknown engine 'altavista' (expected one of bing, "
                                                          "baidu, google, flickr)"),
        (["--emotion", "happy", "--max-per-keyword", "0"], "Error: --max-per-keyword must be at least 1, got 0"),
        (["--emotion", "happy", "--engine", "flickr"], "Error: the flickr engine needs an API key: set "
                                                       "$FLICKR_API_KEY (https://www.flickr.com/services/api/misc."
                                                       "api_keys.html)"),
    ]
    for args, expected in cases:
        code, _, err = call_cli(capsys, "crawl", "--keywords", str(kw), *args, workspace=tmp_path / "ws")
        assert (code, err.strip()) == (2, expected)


def test_default_engine_refuses_private_addresses(tmp_path: Path) -> None:
    """Without --allow-address a local engine is refused: the result page itself is never requested."""
    kw = keywords_file(tmp_path, {"happy": ["glad"]})
    with FakeEngine({"glad face": ["/img/ok/a.jpg"]}) as fake:
        with pytest.raises(CrawlFoundNothing):
            run_crawl(Workspace(tmp_path / "ws"), config(fake, kw, allow_addresses=()))
        assert fake.requests == []


def test_crawl_runs_faces_when_available(tmp_path: Path, monkeypatch) -> None:
    """`fusekit crawl` (``api.crawl``, which composes the two stages) runs the faces stage on the crawled unit."""
    import sys
    import types

    calls = []
    module = types.ModuleType("fusekit.faces")
    module.run_faces = lambda workspace, config=None, units=None: calls.append(units) or "faces ran"
    monkeypatch.setitem(sys.modules, "fusekit.faces", module)
    kw = keywords_file(tmp_path, {"happy": ["glad"]})
    with FakeEngine({"glad face": ["/img/ok/a.jpg"]}) as fake:
        report = api.crawl(Workspace(tmp_path / "ws"), config(fake, kw, faces=True))
    assert calls == [[UNIT]] and report.faces == "faces ran"


def test_the_crawl_stage_alone_never_runs_faces(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    calls = []
    module = types.ModuleType("fusekit.faces")
    module.run_faces = lambda workspace, config=None, units=None: calls.append(units)
    monkeypatch.setitem(sys.modules, "fusekit.faces", module)
    kw = keywords_file(tmp_path, {"happy": ["glad"]})
    with FakeEngine({"glad face": ["/img/ok/a.jpg"]}) as fake:
        report = run_crawl(Workspace(tmp_path / "ws"), config(fake, kw, faces=True))
    assert calls == [] and report.unit == UNIT and report.new_images == 1


def test_threads_finish(tmp_path: Path) -> None:
    """No icrawler thread outlives a crawl (the stock feeder can block forever on a full queue)."""
    import threading

    kw = keywords_file(tmp_path, {"happy": ["glad"]})
    with FakeEngine({"glad face": [f"/img/ok/{i}.jpg" for i in range(40)]}) as fake:
        run_crawl(Workspace(tmp_path / "ws"), config(fake, kw, max_per_keyword=3, threads=4))
        time.sleep(0.1)
        names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("feeder-", "parser-", "downloader-"))]


@pytest.mark.slow
def test_killed_crawl_resumes_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL during the second search; the rerun skips the first search entirely and finishes the second."""
    import os
    import signal
    import subprocess
    import sys

    kw = keywords_file(tmp_path, {"happy": ["glad", "merry"]})
    results = {"glad face": [f"/img/ok/g{i}.jpg" for i in range(3)],
               "merry face": [f"/img/slow-0.5-1/m{i}.jpg" for i in range(3)]}
    ws = Workspace(tmp_path / "ws")
    with FakeEngine(results) as fake:
        args = [sys.executable, "-m", "fusekit", "--workspace", str(ws.root), "crawl", "-e", "happy", "-n", "3",
                "--keywords", str(kw), "--no-faces", "--interval", "0", "--threads", "1", "--timeout", "2",
                "--endpoint", f"{fake.base}/bing/images/async", "--allow-address", "127.0.0.1"]
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        deadline = time.monotonic() + 60
        while fake.images_fetched("/img/slow-0.5-1/m0.jpg") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # The first search was flushed when it ended; the killed second one left nothing behind.
        assert sorted(r["source_path"].rsplit("/", 1)[-1] for r in images(ws)) == ["g0.jpg", "g1.jpg", "g2.jpg"]
        before = len(fake.requests)
        report = run_crawl(ws, config(fake, kw, max_per_keyword=3, threads=1, timeout=2.0))
        after = [p for p, _ in fake.requests[before:]]
    assert [(s.keyword, s.status, s.had, s.kept) for s in report.searches] == [("glad", "complete", 3, 0),
                                                                               ("merry", "done", 0, 3)]
    assert not [p for p in after if "glad" in p or "/g" in p]  # nothing of the finished search was asked again
    assert sorted(r["source_path"].rsplit("/", 1)[-1] for r in images(ws)) == [
        "g0.jpg", "g1.jpg", "g2.jpg", "m0.jpg", "m1.jpg", "m2.jpg"]
