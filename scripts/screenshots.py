"""Regenerate the README's screenshots of the report (docs/img/report.png: the top of the page; report-runs.png: the
a run and its maps) with the tests' headless Chromium.

    python scripts/screenshots.py                      # runs `fusekit demo` in a temporary folder first
    python scripts/screenshots.py --workspace WS       # or shoots the report of an existing workspace

The page is opened offline (tests/headless.py), its top 1000 x 1400 px captured, then the #runs and #explain
sections one under the other, and each PNG reduced to a 256-colour palette so that it stays small in the
repository.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a workspace to report on [default: a fresh demo]")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fusekit-shots-") as tmp:
        workspace = args.workspace
        if workspace is None:
            subprocess.run([sys.executable, "-m", "fusekit", "-q", "demo", "--out", tmp], check=True)
            workspace = Path(tmp) / "workspace"
        subprocess.run([sys.executable, "-m", "fusekit", "-q", "--workspace", str(workspace), "report", "-o",
                        str(Path(tmp) / "report.html")], check=True)
        for path in shoot(Path(tmp) / "report.html", args.out):
            print(f"{path}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
