"""Issue 15, item 8: small faults, each with its test. (Archive ones are in test_archive_limits.py.)

- TensorFlow's start-up lines no longer print before the one-line error of train / evaluate / predict (``-v`` shows
  them);
- a FER-2013 pixel string that holds a non-number is rejected with a clean detail, not numpy's parser message;
- a crawled picture redirected to ``file://`` is rejected as ``unsupported_scheme``, not ``connection_failed``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from helpers import run_cli, write_image
from test_crawl import config, keywords_file, rejects
from test_source_fer2013 import _ingest, _pixel_string, write_fer_csv

from fusekit.crawl import run_crawl
from fusekit.crawl.standin import Reply
from fusekit.records import REJECTS_SCHEMA
from fusekit.sources.fer2013 import parse_pixels
from fusekit.workspace import Workspace

# -- TensorFlow's start-up lines ----------------------------------------------------------------------------------------

needs_keras = pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras is not installed")


@needs_keras
@pytest.mark.slow
def test_train_evaluate_and_predict_errors_are_one_line(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    picture = write_image(tmp_path / "x.png", 1)
    for argv, message in [
        (("train", "--data", str(tmp_path / "nodata"), "--model", "tiny"),
         f"Error: dataset folder {tmp_path / 'nodata'} does not exist (expected the folder `fusekit balance` wrote)"),
        (("evaluate",), f"Error: no runs in {ws / 'runs'}: train one with `fusekit train`"),
        (("predict", str(picture)), f"Error: no runs in {ws / 'runs'}: train one with `fusekit train`"),
    ]:
        code, out, err = run_cli(*argv, workspace=ws)
        assert code == 2 and not out.strip()
        assert err.strip() == message, err  # nothing from TensorFlow before it


@needs_keras
@pytest.mark.slow
def test_verbose_shows_tensorflows_lines(tmp_path: Path) -> None:
    code, _, err = run_cli("-v", "train", "--data", str(tmp_path / "nodata"), "--model", "tiny",
                           workspace=tmp_path / "ws")
    lines = err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("Error: dataset folder")
    assert len(lines) > 1  # TensorFlow's own start-up lines (oneDNN, CUDA probing, CPU features)


# -- FER-2013 pixel strings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    (" ".join(["7"] * 2303) + " abc", "pixels: 2,303 numbers and 1 non-number ('abc') in the pixel string"),
    ("abc " + " ".join(["7"] * 2303), "pixels: 2,303 numbers and 1 non-number ('abc') in the pixel string"),
    (" ".join(["7"] * 2302) + " 1.5 x", "pixels: 2,302 numbers and 2 non-numbers ('1.5', 'x') in the pixel string"),
    (" ".join(["7"] * 10) + " a b c d", "pixels: 10 numbers and 4 non-numbers ('a', 'b', 'c', ...) in the pixel "
                                        "string"),
    ("1 2 3", "3 pixel values, expected 2304 (48x48)"),
    ("", "0 pixel values, expected 2304 (48x48)"),
    (" ".join(["300"] * 2304), "a pixel value lies outside 0-255"),
])
def test_a_bad_pixel_string_is_said_in_words(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_pixels(text)
    assert str(caught.value) == message


def test_a_non_numeric_pixel_string_is_a_clean_reject(tmp_path: Path) -> None:
    pixels = _pixel_string(60).split()
    pixels[-1] = "abc"
    src = write_fer_csv(tmp_path / "fer2013.csv", n=3, extra_rows=[["2", " ".join(pixels), "Training"]])
    _, found, _ = _ingest(Workspace(tmp_path / "ws"), src)
    bad = [r for r in found.to_pylist() if r["source_row"] == 3]
    assert [(r["reason"], r["detail"]) for r in bad] == [
        ("malformed_row", "pixels: 2,303 numbers and 1 non-number ('abc') in the pixel string")]


# -- a redirect to file:// ----------------------------------------------------------------------------------------------

class RedirectingEngine(FakeEngine):
    """``/img/tofile/<name>`` answers 302 to ``file:///etc/passwd``, ``/img/toftp/<name>`` to an ftp:// URL."""

    def reply(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path.startswith("/img/tofile/"):
            return Reply(302, b"", headers={"Location": "file:///etc/passwd"})
        if path.startswith("/img/toftp/"):
            return Reply(301, b"", headers={"Location": "ftp://127.0.0.1/x.jpg"})
        return super().reply(path, query)


def test_a_redirect_to_file_is_an_unsupported_scheme(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    urls = ["/img/ok/a.jpg", "/img/tofile/b.jpg", "/img/toftp/c.jpg"]
    with RedirectingEngine({"fear face": urls}) as fake:
        run_crawl(ws, config(fake, keywords_file(tmp_path, {"fear": ["fear"]})))
    assert rejects(ws) == {fake.url("/img/tofile/b.jpg"): "unsupported_scheme",
                           fake.url("/img/toftp/c.jpg"): "unsupported_scheme"}
    details = {r["source_path"]: r["detail"] for r in ws.read("rejects", REJECTS_SCHEMA).to_pylist()}
    assert details[fake.url("/img/tofile/b.jpg")] == ("redirected to file:///etc/passwd: only http(s) URLs are "
                                                      "fetched, not file scheme")
