"""The demo's STAND-IN search engine (not a real one): ``StandinEngine`` serves pictures generated at start-up from
the two public-domain photos the demo uses (skimage's astronaut, matplotlib's Grace Hopper), turned, mirrored and
re-lit, with some of the web's faults: the same picture under two keywords of different emotions and under two URLs,
an HTML page served as .jpg, a truncated JPEG, a picture whose server opts out with ``X-Robots-Tag: noai``, and a path
that robots.txt disallows. ``demo_crawl`` crawls it into a workspace.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

from fusekit.crawl.standin import STANDIN_LABEL, LocalEngine, Reply, bing_page


class StandinEngine(LocalEngine):
    """The demo's stand-in: Bing-format result pages per query, pictures made from two public-domain photos."""

    PAGE = 20

    def __init__(self, queries: dict[str, int], seed: int = 0, lifetime: float = 300.0) -> None:
        super().__init__(lifetime)
        self.pictures = _pictures(sum(queries.values()), seed)
        self.results: dict[str, list[tuple[str, str | None]]] = {}
        number = 0
        for query, count in queries.items():
            urls = []
            for _ in range(count):
                urls.append((f"{self.base}/img/ok/{number}.jpg", f"{self.base}/page/{number}.html"))
                number += 1
            self.results[query] = urls
        # The web's faults, among the results of the first queries.
        names = list(self.results)
        first, second = self.results[names[0]], self.results[names[1 % len(names)]]
        first.insert(1, (f"{self.base}/img/html/fake.jpg", None))  # an HTML page served as .jpg
        first.insert(3, (f"{self.base}/img/truncated/0.jpg", None))
        second.insert(0, (f"{self.base}/img/noai/0.jpg", None))  # the server opts out of AI use
        second.insert(2, (f"{self.base}/private/0.jpg", None))  # robots.txt disallows /private/
        second.append((f"{self.base}/img/ok/0.jpg?copy=1", None))  # the first picture again, under another URL
        if len(names) > 2:  # the first picture again, found by a keyword of another emotion
            self.results[names[2]].insert(0, (f"{self.base}/img/ok/0.jpg", None))

    def reply(self, path: str, query: dict[str, list[str]]) -> Reply:
        if path == "/robots.txt":
            return Reply(body=b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        if path == "/bing/images/async":
            urls = self.results.get(query.get("q", [""])[0], [])
            first = int(query.get("first", ["0"])[0])
            count = int(query.get("count", [str(self.PAGE)])[0])
            return Reply(body=bing_page(urls[first:first + count]))
        name = path.rsplit("/", 1)[-1].split(".")[0]
        if path.startswith("/img/ok/") and name.isdigit() and int(name) < len(self.pictures):
            return Reply(body=self.pictures[int(name)], content_type="image/jpeg")
        if path.startswith("/img/html/"):
            return Reply(body=b"<!DOCTYPE html><html><body>Not a picture</body></html>", content_type="image/jpeg")
        if path.startswith("/img/truncated/"):
            return Reply(body=self.pictures[0][: len(self.pictures[0]) // 2], content_type="image/jpeg")
        if path.startswith("/img/noai/"):
            return Reply(body=self.pictures[-1], content_type="image/jpeg", headers={"X-Robots-Tag": "noai"})
        return Reply(404, b"not found", content_type="text/plain")



def _pictures(count: int, seed: int) -> list[bytes]:
    import numpy as np

    from fusekit.demo.corpus import _photo, frame, load_photos

    photos = load_photos()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        picture = frame(_photo(photos, i), rng, (320, 320), 0.42, grey=False, background=(90, 100, 120))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


DEMO_KEYWORDS = """\
# The demo's keyword file (a short version of keywords.yaml): two keywords each for two emotions.
version: 1
templates:
  default: "{keyword} face"
emotions:
  happy: [happy, cheerful]
  surprise: [surprise, amazed]
"""


def demo_crawl(workspace, root: Path, echo: Callable[[str], None] = print, faces: bool = True):
    """Crawl the stand-in engine into ``workspace``, then its faces (``fusekit.api.crawl``, what `fusekit demo`
    shows); returns the ``api.CrawlRun``."""
    from fusekit import api
    from fusekit.crawl.stage import CrawlConfig

    root.mkdir(parents=True, exist_ok=True)
    keywords = root / "keywords.yaml"
    keywords.write_text(DEMO_KEYWORDS, encoding="utf-8")
    queries = {f"{k} face": 4 for k in ("happy", "cheerful", "surprise", "amazed")}
    with StandinEngine(queries) as engine:
        echo(f"crawl: a {STANDIN_LABEL} at {engine.base}")
        echo(f"$ fusekit crawl --emotion all --engine standin --keywords {keywords} --max-per-keyword 3 "
             f"--endpoint {engine.base}/bing/images/async --allow-address 127.0.0.1 --interval 0")
        config = CrawlConfig(emotion="all", engine="standin", max_per_keyword=3, keywords=keywords, faces=faces,
                             interval=0.0, timeout=5.0, backoff=0.1, endpoint=f"{engine.base}/bing/images/async",
                             allow_addresses=("127.0.0.1/32",), only_addresses=("127.0.0.1/32",), trust_env=False)
        report = api.crawl(workspace, config)
    echo(report.render())
    return report
