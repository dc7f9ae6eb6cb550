"""Crawl throughput: pictures per second against a local engine, fusekit vs. stock icrawler, side by side.

A Bing-format engine runs on 127.0.0.1 in a child process (so it does not share the crawler's GIL), serving
distinct ~20 KB JPEGs. fusekit crawls one keyword into a fresh workspace with the per-host interval at 0: every
picture is fetched through the polite transport (robots.txt, address checks, bounded reads), fully decoded, hashed,
de-duplicated and written to Parquet. The comparison is what a user would otherwise run: icrawler 0.6.10's
``BingImageCrawler`` (its ``ImageDownloader`` only opens the header, saves numbered files; no decode, no
provenance), pointed at the same engine by an adapter that rewrites www.bing.com. Its ``crawl()`` waits a fixed
``queue_timeout`` of 5 s for more tasks at the end; the figure without that tail is printed too. Both run warm
(modules imported, lxml loaded) and fusekit runs first.

    python benchmarks/bench_crawl.py [--pictures 600] [--threads 4]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import tempfile
import time
from pathlib import Path


def _pictures(count: int) -> list[bytes]:
    import numpy as np
    from PIL import Image

    out = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:200, 0:200]
        base = np.stack([(xx + seed) % 256, (yy * 2) % 256, (xx + yy) % 256], axis=-1)
        pixels = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _serve(count: int, ready) -> None:
    """A minimal keep-alive HTTP/1.1 server (asyncio, prebuilt answers): cheap, so the crawler is what is measured."""
    import asyncio
    from urllib.parse import parse_qs, urlsplit

    from fusekit.crawl.standin import bing_page

    pictures = _pictures(count)

    def answer(status: str, body: bytes, content_type: str) -> bytes:
        return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                .encode() + body)

    images = [answer("200 OK", p, "image/jpeg") for p in pictures]
    robots = answer("200 OK", b"User-agent: *\nAllow: /\n", "text/plain")
    missing = answer("404 Not Found", b"", "text/plain")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                parts = urlsplit(target)
                if parts.path == "/robots.txt":
                    writer.write(robots)
                elif parts.path.endswith("/images/async"):
                    query = parse_qs(parts.query)
                    first, size = int(query["first"][0]), int(query.get("count", ["20"])[0])
                    urls = [(f"{base}/img/{i}.jpg", None) for i in range(first, min(first + size, count))]
                    writer.write(answer("200 OK", bing_page(urls), "text/html"))
                else:
                    name = parts.path.rsplit("/", 1)[-1].split(".")[0]
                    writer.write(images[int(name)] if name.isdigit() and int(name) < count else missing)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def run() -> None:
        nonlocal base
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        ready.put((base, sum(map(len, pictures)) / len(pictures)))
        await asyncio.sleep(600)

    base = ""
    asyncio.run(run())


def bench_fusekit(base: str, pictures: int, threads: int) -> tuple[int, float]:
    from fusekit.crawl import CrawlConfig, run_crawl
    from fusekit.crawl.engines import parse_bing
    from fusekit.crawl.standin import bing_page
    from fusekit.workspace import Workspace

    parse_bing(bing_page([("http://127.0.0.1/x.jpg", None)]), 0)  # warm: bs4 loads lxml on its first page

    with tempfile.TemporaryDirectory() as tmp:
        keywords = Path(tmp) / "kw.yaml"
        keywords.write_text("emotions:\n  happy: [bench]\n")
        config = CrawlConfig(emotion="happy", max_per_keyword=pictures, keywords=keywords, faces=False,
                             interval=0.0, threads=threads, endpoint=f"{base}/bing/images/async",
                             allow_addresses=("127.0.0.1/32",), only_addresses=("127.0.0.1/32",), trust_env=False)
        started = time.perf_counter()
        report = run_crawl(Workspace(Path(tmp) / "ws"), config)
        return report.new_images, time.perf_counter() - started


def bench_icrawler(base: str, pictures: int, threads: int) -> tuple[int, float, float]:
    import logging

    import requests
    from icrawler.builtin import BingImageCrawler

    class Rewrite(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):
            request.url = request.url.replace("https://www.bing.com", f"{base}/bing")
            return super().send(request, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        crawler = BingImageCrawler(downloader_threads=threads, storage={"root_dir": tmp}, log_level=logging.ERROR)
        crawler.session.mount("https://", Rewrite())
        crawler.session.mount("http://", Rewrite())
        last = [0.0]
        original = crawler.downloader.process_meta
        crawler.downloader.process_meta = lambda task: (last.__setitem__(0, time.perf_counter()), original(task))
        started = time.perf_counter()
        crawler.crawl(keyword="bench", max_num=pictures)
        ended = time.perf_counter()
        return len(list(Path(tmp).iterdir())), ended - started, last[0] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=600)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    ready: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(args.pictures, ready), daemon=True)
    server.start()
    base, mean_size = ready.get(timeout=120)
    try:
        kept, seconds = bench_fusekit(base, args.pictures, args.threads)
        stock, stock_seconds, stock_active = bench_icrawler(base, args.pictures, args.threads)
    finally:
        server.terminate()
    ours = kept / seconds
    print(f"local engine: {args.pictures} distinct JPEGs of {mean_size / 1024:.1f} KB on average, "
          f"{args.threads} download threads, per-host interval 0")
    print(f"fusekit crawl:   {kept} pictures in {seconds:.2f} s = {ours:.0f} pictures/s "
          f"(full decode, sha256, dedupe, Parquet)")
    print(f"icrawler stock:  {stock} pictures in {stock_seconds:.2f} s = {stock / stock_seconds:.0f} pictures/s "
          f"({stock / stock_active:.0f}/s without its fixed 5 s idle wait; header check only, numbered files)")
    print(f"ratio fusekit / icrawler: {ours / (stock / stock_seconds):.2f}x "
          f"({ours / (stock / stock_active):.2f}x against icrawler without its idle wait)")


if __name__ == "__main__":
    main()
