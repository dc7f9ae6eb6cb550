"""A local STAND-IN search engine for the demo (and the base of the tests' fake engine). Not a real search engine.

``LocalEngine`` is an HTTP server on 127.0.0.1 (an ephemeral port) that answers result pages in Bing's
``/images/async`` markup and serves the pictures they point at. It records every request, and a watchdog stops it
by itself after ``lifetime`` seconds, so a test or a demo can never leave it running.

The demo's ``StandinEngine`` (pictures made from the demo's photos) subclasses it in ``fusekit.demo.standin``: the
crawl stage knows nothing of the demo, which sits above it.
"""

from __future__ import annotations

import html
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
