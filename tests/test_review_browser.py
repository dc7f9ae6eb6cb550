"""`fusekit review` in a real browser: the system's headless Chromium (Debian `chromium` + `chromium-driver`, never a
downloaded one) driven by Selenium presses keys and clicks on the page of a server started on a free port; the
`reviews` rows are asserted, the server is killed with SIGKILL mid-session, and nothing the page showed as saved is
lost; a restart resumes where the person stopped. The token and the bad requests are checked without a browser."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import headless
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fusekit import reviews
from fusekit.balance import synthetic as syn
from fusekit.records import REVIEW_QUEUE_SCHEMA
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace, write_parquet_atomic

N = 60  # a page holds 40: two pages


def _workspace(root: Path) -> tuple[Workspace, list[dict]]:
    """Faces and a review_queue as `fusekit audit` leaves them (written directly: the page is what is tested)."""
    ws = Workspace(root)
    faces = [syn.face_row(f"fer2013/csv/row{i:05d}#0", "fer2013", CLASSES[i % 7], split="train",
                          image=syn.face_png(500 + i)) for i in range(N)]
    syn.write_faces(ws, faces)
    queue = [{"face_id": f["id"], "dataset": "fer2013", "split": "train", "label": f["label"],
              "reason": "label_issue" if i < 50 else "label_conflict",
              "reasons": ["label_issue" if i < 50 else "label_conflict"], "rank": i + 1, "score": 0.01 * i,
              "top_classes": [CLASSES[(i + 1) % 7], f["label"], CLASSES[(i + 2) % 7]], "top_probs": [0.6, 0.3, 0.1],
              "features": "builtin:hog+pixels"} for i, f in enumerate(faces)]
    write_parquet_atomic(pa.Table.from_pylist(queue, schema=REVIEW_QUEUE_SCHEMA),
                         ws.unit_dir("review_queue", "all") / "part-00000.parquet")
    return ws, queue


class Server:
    """`python -m fusekit review --port 0` in a subprocess; its URL read from what it prints."""

    def __init__(self, ws: Workspace) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "fusekit", "-w", str(ws.root), "review", "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        line = self.proc.stdout.readline()
        assert line.startswith("review page: http://127.0.0.1:"), line + self.proc.stdout.read()
        self.url = line.split(": ", 1)[1].strip()
        self.base = self.url.split("/?", 1)[0]
        self.token = self.url.rsplit("token=", 1)[1]
        for _ in range(100):  # uvicorn answers once its loop runs
            try:
                urllib.request.urlopen(f"{self.base}/api/queue?token={self.token}", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.stdout.close()


def _status(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_every_request_needs_the_token_and_bad_verdicts_are_refused(tmp_path):
    ws, queue = _workspace(tmp_path / "ws")
    server = Server(ws)
    try:
        face = urllib.parse.quote(queue[0]["face_id"])
        for path in ("/", "/api/queue", "/static/app.js", f"/face?id={face}"):
            assert _status(server.base + path)[0] == 403
            assert _status(server.base + path + ("&" if "?" in path else "?") + "token=wrong")[0] == 403
        code, body = _status(f"{server.base}/face?id={face}&token={server.token}")
        assert code == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
        code, body = _status(server.url)
        assert code == 200 and b"/static/app.js?token=" in body and b"http" not in body.split(b"<body", 1)[1]
        post = {"X-Fusekit-Token": server.token, "Content-Type": "application/json"}
        bad = [{"face_id": "nope", "verdict": "reject"}, {"face_id": queue[0]["face_id"], "verdict": "maybe"},
               {"face_id": queue[0]["face_id"], "verdict": "relabel", "label": "bored"}]
        for entry in bad:
            code, body = _status(f"{server.base}/api/verdict", json.dumps(entry).encode(), post)
            assert code == 400 and json.loads(body)["saved"] is False
        code, body = _status(f"{server.base}/api/verdict", json.dumps(
            {"face_id": queue[0]["face_id"], "verdict": "reject", "tab": "t"}).encode(), post)
        assert code == 200 and json.loads(body) == {"saved": True, "seq": 1, "face_id": queue[0]["face_id"],
                                                    "state": {"verdict": "reject", "label": None, "seq": 1}}
    finally:
        server.stop()
    assert [r["verdict"] for r in reviews.load(ws)] == ["reject"]


def _browser(stack: contextlib.ExitStack):
    """tests/headless.py's Chromium (Debian's, by path: no Selenium Manager), with 127.0.0.1 let through its
    resolver rules: every other host still resolves to nothing."""
    reason = headless.missing()
    if reason is not None:
        pytest.skip(reason)
    return stack.enter_context(headless.chromium(1400, 1000, loopback=True))


def _wait(driver, script: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


TILES = "return Array.from(document.querySelectorAll('.tile')).map(t => [t.dataset.faceId, t.dataset.state, " \
        "t.dataset.verdict, t.classList.contains('selected'), t.querySelector('.label').textContent]);"
SETTLED = "return !document.querySelector('.tile[data-state=\"saving\"]') && document.body.dataset.ready;"


def _press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


@pytest.mark.slow
def test_review_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ws, queue = _workspace(tmp_path / "ws")
    ids = [q["face_id"] for q in queue]
    server = Server(ws)
    stack = contextlib.ExitStack()
    try:
        driver = _browser(stack)
        driver.get(server.url)
        _wait(driver, "return document.body.dataset.ready")
        asked = headless.requests_made(driver)  # the page, its two static files, the queue, the thumbnails
        assert asked and all(url.startswith(server.base + "/") for url in asked), asked
        tiles = driver.execute_script(TILES)
        assert len(tiles) == 40 and tiles[0][3] and tiles[0][1] == "todo"
        # keys: reject, relabel to fear (3), accept, skip one (arrow), reject, undo that reject
        _press(driver, "x")
        _press(driver, "3")
        _press(driver, "a")
        _press(driver, Keys.ARROW_RIGHT)
        _press(driver, "x")
        _wait(driver, SETTLED)
        _press(driver, "z")
        _wait(driver, SETTLED)
        # a click selects a tile, a key gives it a verdict; a click on a class button relabels the next one
        driver.find_elements(By.CSS_SELECTOR, ".tile")[10].click()
        _press(driver, "2")
        _wait(driver, SETTLED)
        driver.find_element(By.CSS_SELECTOR, "#class-buttons button[data-class='surprise']").click()
        _press(driver, "n")  # the next page: its first face is selected
        _wait(driver, "return document.querySelectorAll('.tile').length === 20")
        _press(driver, "x")
        _wait(driver, SETTLED)
        rows = [(r["face_id"], r["verdict"], r["label"], r["undoes"]) for r in reviews.load(ws)]
        assert rows == [(ids[0], "reject", None, None), (ids[1], "relabel", "fear", None),
                        (ids[2], "accept", queue[2]["label"], None), (ids[4], "reject", None, None),
                        (ids[4], "undo", None, 4), (ids[10], "relabel", "disgust", None),
                        (ids[11], "relabel", "surprise", None), (ids[40], "reject", None, None)]
        assert driver.execute_script("return document.getElementById('progress').dataset.done") == "6"
        assert driver.execute_script("return document.getElementById('progress').dataset.left") == str(N - 6)

        # a second tab on the same queue: its verdict on face 0 comes later and wins; both are recorded
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(server.url)
        _wait(driver, "return document.body.dataset.ready")
        tiles = driver.execute_script(TILES)
        assert tiles[0][1] == "saved" and tiles[3][3]  # resumes at the first face without a verdict (face 3)
        driver.find_elements(By.CSS_SELECTOR, ".tile")[0].click()
        _press(driver, "a")
        _wait(driver, SETTLED)
        driver.switch_to.window(first)
        given = reviews.verdicts(ws)
        assert given[ids[0]].verdict == "accept" and [r["verdict"] for r in reviews.load(ws)
                                                      if r["face_id"] == ids[0]] == ["reject", "accept"]
        assert set(given) == {ids[i] for i in (0, 1, 2, 10, 11, 40)}

        # SIGKILL mid-session: verdicts are keyed fast, the server dies as soon as the page shows the first saved
        _press(driver, "p")
        driver.find_elements(By.CSS_SELECTOR, ".tile")[20].click()
        _press(driver, "x1x2x3x4")
        _wait(driver, "return document.querySelector('.tile[data-face-id=\"%s\"]').dataset.state === 'saved'"
              % ids[20])
        server.kill()
        _press(driver, "x")  # after the kill: the page must say it is not saved
        _wait(driver, SETTLED)
        tiles = driver.execute_script(TILES)
        shown = {t[0]: t[2] for t in tiles if t[1] == "saved"}
        assert any(t[1] == "error" for t in tiles)
        assert driver.execute_script("return !document.getElementById('banner').hidden")
        given = reviews.verdicts(ws)
        for face_id, verdict in shown.items():  # nothing the page showed as saved was lost
            assert face_id in given and given[face_id].verdict == verdict, face_id
        assert ids[20] in given

        # a restart resumes where the person stopped: every saved verdict shown, the first face without one selected
        server = Server(ws)
        driver.get(server.url)
        _wait(driver, "return document.body.dataset.ready")
        given = reviews.verdicts(ws)
        tiles = driver.execute_script(TILES)
        todo = next(i for i in ids if i not in given)
        assert [t[0] for t in tiles if t[3]] == [todo]
        assert {t[0] for t in tiles if t[1] == "saved"} == {i for i in ids[:40] if i in given}
        assert driver.execute_script("return document.getElementById('progress').dataset.done") == str(len(given))
    finally:
        stack.close()
        server.stop()
    # the server compacted the journal on its way out: the stored table holds every journal row
    assert pq.read_table(ws.parts("reviews", "all")[0]).num_rows == len(reviews.load(ws))
