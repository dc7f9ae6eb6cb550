"""A fake search engine on 127.0.0.1 for the crawl tests: Bing-format result pages, pictures, and scripted faults.

The behaviour of a picture URL is in its path (``/img/<behaviour>/<name>.jpg``), so it survives any query-string
handling. Hits are counted per path, so "fail the first N times" works across retries. The server stops by itself
(watchdog) and records every request with its arrival time.
"""

from __future__ import annotations

import io
import time
import zlib

import numpy as np
from PIL import Image

from fusekit.crawl.standin import LocalEngine, Reply, bing_page


def jpeg(seed: int, size: tuple[int, int] = (96, 96), quality: int = 90) -> bytes:
    """A distinct JPEG per seed (noise over a gradient, so sizes are realistic)."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (1 + seed % 5) + yy) % 256, (yy * 2 + seed) % 256, (xx + yy * 3) % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class FakeEngine(LocalEngine):
    """``results`` maps a query to the picture paths (or absolute URLs) its result list holds, in rank order."""

    def __init__(self, results: dict[str, list[str]], lifetime: float = 60.0, page_size: int | None = None,
                 robots: bytes = b"User-agent: *\nDisallow: /private/\n", image_size: tuple[int, int] = (96, 96),
                 image_quality: int = 90) -> None:
        super().__init__(lifetime)
        self.results = results
        self.page_size = page_size
        self.robots = robots
        self.image_size = image_size
        self.image_quality = image_quality
        self.hits: dict[str, int] = {}
        self.times: list[tuple[float, str]] = []
        self._cache: dict[str, bytes] = {}

    def url(self, path: str) -> str:
        return path if "://" in path else self.base + path

    def picture(self, key: str) -> bytes:
        if key not in self._cache:
            self._cache[key] = jpeg(zlib.crc32(key.encode()), self.image_size, self.image_quality)
        return self._cache[key]

    def images_fetched(self, path: str) -> int:
        return self.count(lambda p: p.split("?")[0] == path)

    def reply(self, path: str, query: dict[str, list[str]]) -> Reply:
        with self.lock:
            self.hits[path] = hit = self.hits.get(path, 0) + 1
            self.times.append((time.monotonic(), path))
        if path == "/robots.txt":
            return Reply(body=self.robots, content_type="text/plain") if self.robots else Reply(404, b"")
        if path == "/bing/images/async":
            paths = self.results.get(query.get("q", [""])[0], [])
            first = int(query.get("first", ["0"])[0])
            count = self.page_size or int(query.get("count", ["35"])[0])
            return Reply(body=bing_page([(self.url(p), f"{self.base}/page{p}") for p in paths[first:first + count]]))
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "img":
            return Reply(404, b"not found", content_type="text/plain")
        behaviour, name = parts[1], parts[2]
        ok = Reply(body=self.picture(name), content_type="image/jpeg")
        kind, *args = behaviour.split("-")
        if kind == "ok":
            return ok
        if kind == "same":  # one picture under many URLs
            return Reply(body=self.picture("the-same-picture"), content_type="image/jpeg")
        if kind == "fail":  # fail-CODE-N: HTTP CODE for the first N hits, then the picture
            code, times = int(args[0]), int(args[1])
            return Reply(code, b"busy", content_type="text/plain") if hit <= times else ok
        if kind == "retryafter":  # retryafter-SECS-N: 503 with Retry-After for the first N hits
            secs, times = args[0], int(args[1])
            return Reply(503, b"later", content_type="text/plain", headers={"Retry-After": secs}) \
                if hit <= times else ok
        if kind == "slow":  # slow-SECS-N: answer after SECS for the first N hits (a client timeout)
            secs, times = float(args[0]), int(args[1])
            return Reply(body=ok.body, content_type="image/jpeg", delay=secs if hit <= times else 0.0)
        if kind == "loop":  # a redirect to itself, forever
            return Reply(302, b"", headers={"Location": path})
        if kind == "redirect":  # redirect-private: to a private address; redirect-ok: to a good picture
            target = "http://10.0.0.1/x.jpg" if args[0] == "private" else f"/img/ok/{name}"
            return Reply(302, b"", headers={"Location": target})
        if kind == "html":  # HTML served as .jpg
            return Reply(body=b"<!DOCTYPE html><html><body>login first</body></html>", content_type="text/html")
        if kind == "trunc":
            data = self.picture(name)
            return Reply(body=data[: len(data) // 2], content_type="image/jpeg")
        if kind == "big":  # big-BYTES: a body of that size, with Content-Length
            return Reply(body=b"\xff" * int(args[0]), content_type="image/jpeg")
        if kind == "bigchunked":  # the same, chunked: no Content-Length to refuse it early
            return Reply(body=b"\xff" * int(args[0]), content_type="image/jpeg",
                         headers={"Transfer-Encoding": "chunked"})
        if kind == "noai":
            return Reply(body=ok.body, content_type="image/jpeg", headers={"X-Robots-Tag": "noai"})
        if kind == "otherbotnoai":  # an opt-out aimed at another crawler: not for us
            return Reply(body=ok.body, content_type="image/jpeg", headers={"X-Robots-Tag": "otherbot: noai"})
        if kind == "tiny":
            return Reply(body=jpeg(5, (16, 16)), content_type="image/jpeg")
        return Reply(404, b"not found", content_type="text/plain")
