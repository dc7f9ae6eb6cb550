"""One search (engine, emotion, keyword) run through icrawler 0.6.10's threads, with its bugs worked around.

icrawler supplies the machinery: ``Crawler`` builds the shared session, the ``Signal`` and the feeder → parser →
downloader thread pools joined by queues. fusekit supplies what each stage does (shared/notes/icrawler.md §0):

* the queues record an item as seen only after the put succeeded (bug 1: tasks silently lost when a queue is full);
* the feeder asks for the next result page only when the previous page is done and more pictures are wanted, and
  stops on an empty or failed page (no pages fetched for nothing; the stock feeder blocks forever on a full queue);
* the parser checks the HTTP status (bug 2), always yields a list (bug 7) and keeps rank and page URL per result;
* the downloader skips known and rejected URLs before any request, reserves a slot before fetching so exactly
  ``target`` new pictures are fetched with no wasted requests, decodes every body fully (bug 6), checks
  X-Robots-Tag, stores bytes in the workspace instead of numbered files (bug 3), and returns True/False (bug 4);
* each search gets a fresh crawler (bug 8: dedupe caches live on the crawler object), and the crawl loop polls
  every 20 ms instead of every second.

Transport rules (interval, robots.txt, retries, size and time limits, address checks) are in ``politeness.py``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from icrawler import Crawler, Downloader, Feeder, Parser
from icrawler.storage import BaseStorage
from icrawler.utils.cached_queue import CachedQueue

from fusekit.crawl.engines import Engine, Result, public_url
from fusekit.crawl.politeness import PoliteAdapter, Politeness, Refused, opt_out
from fusekit.crawl.store import CrawlStore
from fusekit.imageio import Rejected, open_image, sha256_hex

log = logging.getLogger(__name__)
POLL = 0.02


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Search:
    """What one crawler is asked for, and what it found (shared by its threads; guarded by ``cond``)."""

    engine: Engine
    emotion: str
    keyword: str
    query: str
    target: int  # new pictures wanted from this search
    params: dict[str, str] = field(default_factory=dict)  # extra page-URL parameters (the Flickr key)
    min_side: int = 0
    flush_every: int = 200
    cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    # progress, guarded by cond
    pages_fed: int = 0
    pages_done: int = 0
    outstanding: int = 0  # tasks handed to the downloader and not finished
    in_flight: int = 0  # downloads under way
    stop: bool = False
    # results
    results: int = 0
    kept: int = 0
    duplicates: int = 0  # new URL, bytes already stored
    known: int = 0  # URL already stored: provenance added, no request
    skipped_rejected: int = 0  # URL rejected before: no request
    conflicts: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    page_problems: list[str] = field(default_factory=list)  # "page 1 (offset 0): HTTP 503" ...
    empty_first_page: bool = False

    def done(self) -> bool:
        return self.stop or self.kept >= self.target


class _SafeQueue(CachedQueue):
    """CachedQueue that marks an item as seen only once it is really in the queue (icrawler bug 1)."""

    def put(self, item, block=True, timeout=None, dup_callback=None):
        key = json.dumps(item, sort_keys=True) if isinstance(item, dict) else item
        if key in self._cache:
            if dup_callback:
                dup_callback(item)
            return
        queue.Queue.put(self, item, block, timeout)
        self._cache[key] = 1


class _NoStorage(BaseStorage):
    """Pictures go to the workspace through CrawlStore, never to icrawler's file storage."""

    def write(self, id, data):  # noqa: A002 - icrawler's signature
        raise AssertionError("fusekit stores pictures through CrawlStore")

    def exists(self, id):  # noqa: A002
        return False

    def max_file_idx(self):
        return 0


class SearchFeeder(Feeder):
    def __init__(self, thread_num, signal, session, search: Search, prefetch: int = 4):
        super().__init__(thread_num, signal, session)
        self.search = search
        self.prefetch = prefetch  # ask for the next page once this few downloads are left

    def feed(self, **_: Any) -> None:
        search = self.search
        engine = search.engine
        for offset in range(0, engine.max_results, engine.step):
            with search.cond:
                # The next page only when the last one is parsed and its pictures cannot meet the target even if
                # all succeed; asked for while the last few downloads run, so the threads never wait for a page.
                while not (search.done() or self.signal.get("reach_max_num")) and (
                        search.pages_done < search.pages_fed
                        or search.kept + search.outstanding >= search.target
                        or search.outstanding > self.prefetch):
                    search.cond.wait(0.5)
                if search.done() or self.signal.get("reach_max_num"):
                    return
                search.pages_fed += 1
            page = {"url": engine.page_url(search.query, offset, search.params), "offset": offset}
            while not self.signal.get("reach_max_num"):
                try:
                    self.out_queue.put(page, timeout=0.2)
                    break
                except queue.Full:
                    continue


class SearchParser(Parser):
    def __init__(self, thread_num, signal, session, search: Search):
        super().__init__(thread_num, signal, session)
        self.search = search

    def worker_exec(self, queue_timeout=2, req_timeout=5, max_retry=1, **kwargs):  # icrawler's signature
        search = self.search
        while not self.signal.get("reach_max_num"):
            try:
                page = self.in_queue.get(timeout=POLL * 5)
            except queue.Empty:
                if self.signal.get("feeder_exited") and self.in_queue.empty():
                    break
                continue
            try:
                tasks = self._page_tasks(page, req_timeout)
            finally:
                self.in_queue.task_done()
            for task in tasks:
                while not self.signal.get("reach_max_num"):
                    try:
                        self.output(task, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                else:
                    with search.cond:  # never handed over: not outstanding
                        search.outstanding -= 1
            with search.cond:
                search.pages_done += 1
                search.cond.notify_all()

    def _page_tasks(self, page: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        search = self.search
        number = page["offset"] // search.engine.step + 1
        where = f"page {number} (results {page['offset'] + 1}-{page['offset'] + search.engine.step})"
        try:
            response = self.session.get(page["url"], timeout=timeout)
        except Refused as exc:
            return self._page_failed(f"{where}: refused ({exc.reason}: {exc.detail})")
        except requests.RequestException as exc:
            return self._page_failed(f"{where}: {type(exc).__name__}: {exc}")
        if response.status_code != 200:
            note = getattr(response, "fusekit_note", "")
            return self._page_failed(f"{where}: HTTP {response.status_code}" + (f" ({note})" if note else ""))
        results = search.engine.parse(response.content, page["offset"])
        if not results:
            with search.cond:
                search.stop = True  # the end of the results (or a page the parser cannot read)
                if number == 1:
                    search.empty_first_page = True
                    search.page_problems.append(f"{where}: HTTP 200, {len(response.content):,} bytes parsed to no "
                                                f"pictures")
            return []
        tasks, seen = [], set()
        query_url = public_url(page["url"])
        for result in results:
            if result.url in seen:  # the same URL twice on one page: the better rank stands
                continue
            seen.add(result.url)
            tasks.append(_task(result, query_url))
        with search.cond:
            search.results += len(results)
            search.outstanding += len(tasks)
        return tasks

    def _page_failed(self, problem: str) -> list[dict[str, Any]]:
        with self.search.cond:
            self.search.page_problems.append(problem)
            self.search.stop = True
        return []


def _task(result: Result, query_url: str) -> dict[str, Any]:
    return {"file_url": result.url, "rank": result.rank, "page_url": result.page_url, "query_url": query_url}


class SearchDownloader(Downloader):
    def __init__(self, thread_num, signal, session, storage, search: Search, store: CrawlStore,
                 politeness: Politeness):
        super().__init__(thread_num, signal, session, storage)
        self.search = search
        self.store = store
        self.politeness = politeness

    def worker_exec(self, max_num, default_ext="", queue_timeout=5, req_timeout=5, max_idle_time=None, **kwargs):
        # Ends when the parser is gone and the queue is empty, or when the search is done; never on a mere pause
        # (icrawler ends a downloader whose queue is empty for queue_timeout while the parser is still working).
        while True:
            if self.search.done():
                self.signal.set(reach_max_num=True)
            try:
                task = self.in_queue.get(timeout=POLL)
            except queue.Empty:
                if self.signal.get("parser_exited") or self.signal.get("reach_max_num"):
                    break
                continue
            try:
                if not self.signal.get("reach_max_num"):
                    self.download(task, default_ext, req_timeout)
            except Exception:  # noqa: BLE001 - one bad task must not kill the thread
                log.exception("crawl: unexpected error on %s", task.get("file_url"))
            finally:
                with self.search.cond:
                    self.search.outstanding -= 1
                    self.search.cond.notify_all()
                self.in_queue.task_done()

    def download(self, task, default_ext, timeout=5, max_retry=1, overwrite=False, **kwargs) -> bool:
        search, store = self.search, self.store
        url = task["file_url"]
        sighting = self._record(task)
        state = store.url_state(url)
        if state is not None:
            kind, value = state
            with search.cond:
                if kind == "image":
                    added = store.add_provenance(value, sighting)
                    search.known += 1
                    search.conflicts += added.conflict
                else:
                    search.skipped_rejected += 1
            return False
        try:  # scheme and address first: a refused URL costs no slot and no request
            self.politeness.check_url(url)
        except Refused as exc:
            return self._reject(task, exc.reason, exc.detail)
        except requests.RequestException as exc:
            return self._reject(task, "connection_failed", _short(exc))
        with search.cond:  # reserve a slot: never more downloads under way than pictures still wanted
            while not search.done() and search.kept + search.in_flight >= search.target:
                search.cond.wait(0.5)
            if search.done():
                return False
            search.in_flight += 1
        try:
            outcome = self._fetch(task, sighting, timeout)
        finally:
            with search.cond:
                search.in_flight -= 1
                search.cond.notify_all()
        if store.pending() >= search.flush_every:
            store.flush()
        return outcome

    def _record(self, task: dict[str, Any]) -> dict[str, Any]:
        search = self.search
        return {"engine": search.engine.name, "emotion": search.emotion, "keyword": search.keyword,
                "query": search.query, "rank": task["rank"], "url": task["file_url"], "page_url": task["page_url"],
                "query_url": task["query_url"], "fetched": False, "time": utc_now()}

    def _fetch(self, task: dict[str, Any], record: dict[str, Any], timeout: float) -> bool:
        search, store = self.search, self.store
        url = task["file_url"]
        try:
            response = self.session.get(url, timeout=timeout)
        except Refused as exc:
            return self._reject(task, exc.reason, exc.detail)
        except requests.TooManyRedirects as exc:
            return self._reject(task, "too_many_redirects", str(exc))
        except requests.Timeout as exc:
            return self._reject(task, "timeout", f"{type(exc).__name__}: {_short(exc)}")
        except requests.RequestException as exc:
            return self._reject(task, "connection_failed", f"{type(exc).__name__}: {_short(exc)}")
        tries = getattr(response, "fusekit_tries", 1)
        if response.status_code != 200:
            note = getattr(response, "fusekit_note", "")
            return self._reject(task, "http_error", f"HTTP {response.status_code} after {tries} "
                                                    f"{'try' if tries == 1 else 'tries'}" + (f"; {note}" if note else ""))
        directive = opt_out(response.headers)
        if directive:
            return self._reject(task, "opted_out", f"X-Robots-Tag: {response.headers.get('X-Robots-Tag')}")
        data = response.content
        try:
            image = open_image(data)  # a full decode: truncated files and HTML served as .jpg fail here
        except Rejected as exc:
            return self._reject(task, exc.reason, exc.detail)
        if min(image.size) < search.min_side:
            return self._reject(task, "too_small", f"{image.width}x{image.height} is below {search.min_side} px")
        record.update(fetched=True, http_status=response.status_code, tries=tries,
                      content_type=response.headers.get("Content-Type"), bytes=len(data), sha256=sha256_hex(data),
                      final_url=response.url if response.url != url else None, time=utc_now())
        added = store.add_picture(search.engine.name, record, data, image.width, image.height, image.mode,
                                  image.format or "")
        with search.cond:
            if added.new:
                search.kept += 1
            else:
                search.duplicates += 1
                search.conflicts += added.conflict
            search.cond.notify_all()
        return added.new

    def _reject(self, task: dict[str, Any], reason: str, detail: str) -> bool:
        self.store.add_reject(self.search.engine.name, task["file_url"], task["rank"], self.search.keyword, reason,
                              detail)
        with self.search.cond:
            self.search.rejects[reason] += 1
        return False


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:197] + "..."


class SearchCrawler(Crawler):
    """A fresh icrawler Crawler for one search, wired to fusekit's feeder, parser, downloader and transport."""

    def __init__(self, search: Search, store: CrawlStore, politeness: Politeness, threads: int = 4,
                 trust_env: bool = True) -> None:
        self.search = search
        self.politeness = politeness
        super().__init__(feeder_cls=SearchFeeder, parser_cls=SearchParser, downloader_cls=SearchDownloader,
                         feeder_threads=1, parser_threads=1, downloader_threads=threads, storage=_NoStorage(),
                         extra_feeder_args={"search": search, "prefetch": threads}, extra_parser_args={"search": search},
                         extra_downloader_args={"search": search, "store": store, "politeness": politeness})
        pages, tasks = _SafeQueue(5), _SafeQueue(5 * max(threads, 8))
        self.feeder.out_queue = self.parser.in_queue = pages
        self.parser.out_queue = self.downloader.in_queue = tasks
        adapter = PoliteAdapter(politeness, pool_size=threads + 2)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.max_redirects = 5
        self.session.trust_env = trust_env
        self.session.headers.update({"User-Agent": politeness.rules.user_agent, **search.engine.headers})

    def set_logger(self, log_level=logging.INFO):
        # icrawler's version calls logging.basicConfig on the root logger; fusekit's CLI owns logging.
        self.logger = logging.getLogger("fusekit.crawl.icrawler")
        for name in ("feeder", "parser", "downloader"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def crawl(self, feeder_kwargs=None, parser_kwargs=None, downloader_kwargs=None) -> None:
        self.signal.reset()
        timeout = self.politeness.rules.timeout
        self.feeder.start()
        self.parser.start(req_timeout=timeout)
        self.downloader.start(max_num=self.search.target, req_timeout=timeout)
        try:
            while self.downloader.is_alive():
                if not self.feeder.is_alive():
                    self.signal.set(feeder_exited=True)
                if not self.parser.is_alive():
                    self.signal.set(parser_exited=True)
                time.sleep(POLL)
        except KeyboardInterrupt:
            self.stop()
            raise
        self.stop()

    def stop(self) -> None:
        """Tell every thread to finish and wait (briefly) for the downloads under way."""
        with self.search.cond:
            self.search.stop = True
            self.search.cond.notify_all()
        self.signal.set(reach_max_num=True)
        deadline = time.monotonic() + self.politeness.rules.max_seconds + 1
        for worker in self.downloader.workers + self.parser.workers + self.feeder.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
