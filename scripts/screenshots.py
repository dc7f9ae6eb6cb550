"""Regenerate the README's screenshots with the tests' headless Chromium: the report (docs/img/report.png: the top of
the page; report-runs.png: a run and its maps) and the review page (docs/img/review.png: `fusekit review` on an
audit queue, a few verdicts given by key and shown as saved).

    python scripts/screenshots.py                      # runs `fusekit demo` in a temporary folder first
    python scripts/screenshots.py --workspace WS       # or shoots the report of an existing workspace
    python scripts/screenshots.py --only review        # one of them (review: a demo without training is enough)

The report is opened offline (tests/headless.py), its top 1000 x 1400 px captured, then the #runs and #explain
sections one under the other. For the review page, `fusekit audit` queues the demo's faces (a WS must have been
audited) and `fusekit review --port 0` serves them; with WS, the server runs on a copy of its faces and queue, so
the keys never give WS a verdict. Each PNG is reduced to a 256-colour palette so that it stays small in the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _small(image, out: Path) -> Path:
    from PIL import Image

    small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(out, format="PNG", optimize=True)
    return out


def shoot(report: Path, out: Path, width: int = 1000, height: int = 1400) -> list[Path]:
    import io

    import headless
    from PIL import Image

    reason = headless.missing()
    if reason is not None:
        raise SystemExit(reason)
    with headless.chromium(width, height) as driver:
        driver.get(report.resolve().as_uri())
        raw = out.with_suffix(".raw.png")
        headless.full_page_png(driver, raw, width=width, max_height=height)
        with Image.open(raw) as image:
            written = [_small(image, out)]
        raw.unlink()
        driver.set_window_size(width, 6000)  # every section whole inside the window
        parts = [Image.open(io.BytesIO(driver.find_element("id", sid).screenshot_as_png)).convert("RGB")
                 for sid in ("runs", "explain")]
    sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height + 8 for p in parts)), (250, 250, 250))
    y = 0
    for part in parts:
        sheet.paste(part, (0, y))
        y += part.height + 8
    written.append(_small(sheet, out.with_name(out.stem + "-runs.png")))
    return written


# The keys pressed on the review page: reject, relabel to angry (1), accept, reject; each tile says "saved" once the
# server has the verdict on disk.
REVIEW_KEYS = ("x", "1", "a", "x")
SETTLED = "return !document.querySelector('.tile[data-state=\"saving\"]') && document.body.dataset.ready"


def _wait(driver, script: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise SystemExit(f"the review page never got to: {script}")
        time.sleep(0.05)


def _review_copy(workspace: Path, into: Path) -> Path:
    """The tables the review server reads (faces, review_queue), copied: the verdicts the keys give land there."""
    for table in ("faces", "review_queue"):
        shutil.copytree(workspace / "tables" / table, into / "tables" / table)
    return into


def shoot_review(workspace: Path, out: Path, width: int = 1000, height: int = 745) -> Path:
    """The review page of ``workspace`` (which has an audit queue) after the REVIEW_KEYS, as a small PNG."""
    import io

    import headless
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains

    reason = headless.missing()
    if reason is not None:
        raise SystemExit(reason)
    server = subprocess.Popen([sys.executable, "-m", "fusekit", "-w", str(workspace), "review", "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = server.stdout.readline()
        if not line.startswith("review page: "):
            raise SystemExit(f"fusekit review did not start: {line}{server.stdout.read()}")
        url = line.split(": ", 1)[1].strip()
        with headless.chromium(width, height, loopback=True) as driver:
            for _ in range(100):  # uvicorn answers once its loop runs
                driver.get(url)
                if driver.execute_script("return !!document.getElementById('grid')"):
                    break
            _wait(driver, "return document.body.dataset.ready && "
                          "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            for key in REVIEW_KEYS:
                ActionChains(driver).send_keys(key).perform()
            _wait(driver, SETTLED + " && document.querySelectorAll('.tile[data-state=\"saved\"]').length === "
                  + str(len(REVIEW_KEYS)))
            shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        server.stdout.close()
    return _small(shot, out)


def _fusekit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fusekit", "-q", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a workspace to shoot [default: a fresh demo]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png")
    parser.add_argument("--review-out", type=Path, default=ROOT / "docs" / "img" / "review.png")
    parser.add_argument("--only", choices=("report", "review"), help="one of the screenshots [default: both]")
    args = parser.parse_args()
    written = []
    with tempfile.TemporaryDirectory(prefix="fusekit-shots-") as tmp:
        workspace = args.workspace
        if workspace is None:
            _fusekit("demo", "--out", tmp, *(["--no-train"] if args.only == "review" else []))
            workspace = Path(tmp) / "workspace"
        if args.only != "review":
            _fusekit("--workspace", str(workspace), "report", "-o", str(Path(tmp) / "report.html"))
            written += shoot(Path(tmp) / "report.html", args.out)
        if args.only != "report":
            if args.workspace is None:
                _fusekit("--workspace", str(workspace), "audit")
            elif not (workspace / "tables" / "review_queue").is_dir():
                raise SystemExit(f"{workspace} has no review queue: run `fusekit -w {workspace} audit` first")
            else:
                workspace = _review_copy(workspace, Path(tmp) / "review-ws")
            written.append(shoot_review(workspace, args.review_out))
        for path in written:
            print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
