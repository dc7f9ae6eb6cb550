"""A local STAND-IN search engine for the demo (and the base of the tests' fake engine). Not a real search engine.

``LocalEngine`` is an HTTP server on 127.0.0.1 (an ephemeral port) that answers result pages in Bing's
``/images/async`` markup and serves the pictures they point at. It records every request, and a watchdog stops it
by itself after ``lifetime`` seconds, so a test or a demo can never leave it running.

``StandinEngine`` serves pictures generated at start-up from the two public-domain photos the demo uses
(skimage's astronaut, matplotlib's Grace Hopper), turned, mirrored and re-lit, with some of the web's faults: the same
picture under two keywords of different emotions and under two URLs, an HTML page served as .jpg, a truncated JPEG,
a picture whose server opts out with ``X-Robots-Tag: noai``, and a path that robots.txt disallows.
``demo_crawl`` crawls it into a workspace.
"""

from __future__ import annotations

import html
import io
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

STANDIN_LABEL = "local stand-in engine (127.0.0.1, generated pictures; not a real search engine)"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] | None = None
    content_type: str = "text/html; charset=utf-8"
    delay: float = 0.0  # seconds to wait before answering


def bing_page(urls: list[tuple[str, str | None]]) -> bytes:
    """Bing ``/images/async`` markup for (picture URL, page URL) pairs; the ``m`` JSON is compact as Bing's is."""
    items = []
    for url, page in urls:
        meta = json.dumps({"murl": url, "purl": page or "", "t": "result"}, separators=(",", ":"))
        items.append(f'<div class="imgpt"><a class="iusc" m="{html.escape(meta, quote=True)}" href="#">'
                     f'<img class="mimg" src="x"/></a></div>')
    return ("<!DOCTYPE html><html><body><ul class=\"dgControl_list\">" + "".join(f"<li>{i}</li>" for i in items)
            + "</ul></body></html>").encode()


class LocalEngine:
    """An HTTP server on 127.0.0.1 that stops by itself; subclasses implement ``reply(path, query)``."""

    def __init__(self, lifetime: float = 120.0) -> None:
        self.requests: list[tuple[str, int]] = []  # (path?query, status) in arrival order
        self.lock = threading.Lock()
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                reply = engine.reply(parts.path, parse_qs(parts.query))
                with engine.lock:
                    engine.requests.append((self.path, reply.status))
                if reply.delay:
                    threading.Event().wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    headers = dict(reply.headers or {})
                    if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                        headers["Content-Length"] = str(len(reply.body))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if headers.get("Transfer-Encoding") == "chunked":
                        for start in range(0, len(reply.body), 65536):
                            chunk = reply.body[start:start + 65536]
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._watchdog = threading.Timer(lifetime, self.stop)
        self._watchdog.daemon = True

    def reply(self, path: str, query: dict[str, list[str]]) -> Reply:
        raise NotImplementedError

    def start(self) -> LocalEngine:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        self._watchdog.cancel()
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, predicate: Callable[[str], bool]) -> int:
        with self.lock:
            return sum(1 for path, _ in self.requests if predicate(path))


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

    from fusekit.demo import _photo, frame, load_photos

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
    """Crawl the stand-in engine into ``workspace`` (what `fusekit demo` shows); returns the CrawlReport."""
    from fusekit.crawl.stage import CrawlConfig, format_report, run_crawl

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
        report = run_crawl(workspace, config)
    echo(format_report(report))
    return report
