"""`fusekit crawl`: keywords per emotion -> image search -> stored, decoded, provenance-tracked `images` rows.

One search per (engine, emotion, keyword), each through a fresh icrawler crawler (``crawler.py``) sharing one
politeness state (``politeness.py``) and one store (``store.py``). A search asks only for what is missing:
``--max-per-keyword`` counts pictures kept by earlier runs, so a rerun with the same number fetches nothing and a
larger number fetches only the difference. The store is flushed after every search (and every ``flush_every``
pictures), so an interrupted crawl loses at most that much. The faces stage is not run here: ``fusekit.api.crawl``
runs it on the unit afterwards, as `fusekit crawl` does unless ``--no-faces``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusekit import __version__, locks
from fusekit.crawl.engines import ENGINES, PUBLIC_ENGINES, Engine
from fusekit.crawl.keywords import Keywords, load_keywords
from fusekit.crawl.store import CrawlStore, crawl_units, unit_for
from fusekit.config import FromMapping
from fusekit.errors import ConfigError, FusekitError
from fusekit.taxonomy import CLASSES, normalise
from fusekit.workspace import Unit, Workspace
from fusekit.text import reasons

if TYPE_CHECKING:  # the transport (requests, icrawler, bs4) is imported by a crawl, not by `fusekit status`
    from fusekit.crawl.politeness import Politeness, Rules

log = logging.getLogger(__name__)
DEFAULT_CONTACT = "https://pypi.org/project/fusekit/"
FLICKR_KEY_VARIABLES = ("FLICKR_API_KEY", "FLICKR_APIKEY")


class CrawlFoundNothing(FusekitError):
    """The crawl ended with no picture stored for what was asked (exit 1: an engine broke, never a silent zero)."""

    def __init__(self, message: str, report: CrawlReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class CrawlConfig(FromMapping):
    """What `fusekit crawl` was asked to do. Times are seconds; defaults are the polite ones for the real web."""

    emotion: str = "all"  # a canonical emotion (or a spelling taxonomy knows: "anger"), or "all"
    engine: str = "bing"
    max_per_keyword: int = 100
    keywords: str | Path | None = None  # None: ./keywords.yaml, else the packaged copy
    faces: bool = True  # run the faces stage afterwards: read by fusekit.api.crawl, which composes the two
    contact: str = DEFAULT_CONTACT  # named in the User-Agent so site owners can reach whoever runs the crawl
    interval: float = 1.0  # between two requests to one host
    threads: int = 4
    timeout: float = 10.0
    max_seconds: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    max_tries: int = 3
    backoff: float = 1.0
    retry_after_max: float = 60.0
    min_side: int = 48
    endpoint: str | None = None  # another base URL for the engine's result pages (a mirror, a local stand-in)
    allow_addresses: tuple[str, ...] = ()  # non-public networks that may be fetched (127.0.0.1/32 for a local engine)
    only_addresses: tuple[str, ...] | None = None  # refuse everything outside these networks (tests)
    retry_rejected: bool = False  # fetch again URLs that failed for a transient reason on an earlier run
    api_key: str | None = None  # Flickr; default from $FLICKR_API_KEY
    flush_every: int = 200
    trust_env: bool = True  # honour HTTP(S)_PROXY and friends

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r} (expected one of {', '.join(PUBLIC_ENGINES)})")
        if self.max_per_keyword < 1:
            raise ConfigError(f"--max-per-keyword must be at least 1, got {self.max_per_keyword}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.interval < 0:
            raise ConfigError(f"--interval must be 0 or more seconds, got {self.interval}")
        if not self.contact.startswith(("http://", "https://", "mailto:")):
            raise ConfigError(f"--contact must be a URL (http(s):// or mailto:), got {self.contact!r}")
        if self.emotion != "all" and normalise(self.emotion) is None:
            raise ConfigError(f"unknown emotion {self.emotion!r} (expected all or one of {', '.join(CLASSES)})")
        for spec in self.allow_addresses + (self.only_addresses or ()):
            import ipaddress

            try:
                ipaddress.ip_network(spec, strict=False)
            except ValueError:
                raise ConfigError(f"--allow-address takes an address or network (127.0.0.1, 10.0.0.0/8), "
                                  f"got {spec!r}") from None

    def user_agent(self) -> str:
        return f"fusekit/{__version__} (+{self.contact})"

    def rules(self) -> Rules:
        from fusekit.crawl.politeness import Rules

        return Rules(user_agent=self.user_agent(), interval=self.interval, timeout=self.timeout,
                     max_seconds=self.max_seconds, max_bytes=self.max_bytes, max_tries=self.max_tries,
                     backoff=self.backoff, retry_after_max=self.retry_after_max, allow=self.allow_addresses,
                     only=self.only_addresses)


@dataclass
class SearchReport:
    engine: str
    emotion: str
    keyword: str
    query: str
    had: int  # pictures this search had found on earlier runs
    target: int  # new pictures asked for
    status: str = "done"  # done | complete | exhausted | empty | failed | interrupted
    results: int = 0
    kept: int = 0
    duplicates: int = 0
    known: int = 0
    skipped_rejected: int = 0
    conflicts: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


@dataclass
class CrawlReport:
    engine: str
    unit: str
    emotions: list[str]
    keywords_path: str
    max_per_keyword: int
    searches: list[SearchReport] = field(default_factory=list)
    stored_total: int = 0  # pictures of these emotions in the workspace after the run (earlier runs included)
    requests: int = 0
    robots_fetched: int = 0
    retries: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def new_images(self) -> int:
        return sum(s.kept for s in self.searches)

    @property
    def rejects(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for search in self.searches:
            total.update(search.rejects)
        return total

    @property
    def conflicts(self) -> int:
        return sum(s.conflicts for s in self.searches)

    def render(self) -> str:
        return format_report(self)


def _emotions(config: CrawlConfig, keywords: Keywords) -> tuple[list[str], list[str]]:
    """The emotions to crawl, and notes about the ones skipped for want of keywords."""
    if config.emotion == "all":
        chosen = [c for c in CLASSES if keywords.for_emotion(c)]
        skipped = [c for c in CLASSES if not keywords.for_emotion(c)]
        notes = [f"{', '.join(skipped)}: no keywords in {keywords.path}, not crawled"] if skipped else []
        if not chosen:
            raise ConfigError(f"{keywords.path} lists no keywords for any emotion")
        return chosen, notes
    emotion = normalise(config.emotion)
    assert emotion is not None  # checked by CrawlConfig
    if not keywords.for_emotion(emotion):
        raise ConfigError(f"{keywords.path} lists no keywords for {emotion}: add some under `emotions: {emotion}:`")
    return [emotion], []


def _engine(config: CrawlConfig) -> tuple[Engine, dict[str, str]]:
    engine = ENGINES[config.engine]
    if config.endpoint:
        if not config.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"--endpoint must be an http(s) URL, got {config.endpoint!r}")
        engine = replace(engine, base_url=config.endpoint)
    params: dict[str, str] = {}
    if engine.needs_key:
        key = config.api_key or next((os.environ[v] for v in FLICKR_KEY_VARIABLES if os.environ.get(v)), None)
        if not key:
            raise ConfigError(f"the {engine.name} engine needs an API key: set ${engine.needs_key} "
                              f"(https://www.flickr.com/services/api/misc.api_keys.html)")
        params["api_key"] = key
    return engine, params


def exclusive(workspace: Workspace, unit: str) -> contextlib.AbstractContextManager[None]:
    """One crawl per workspace at a time (two would both think a URL is new, and a crawl may rewrite a part of
    another engine's unit): the ``crawl`` lock and the unit's own, with the workspace lock shared (fusekit.locks)."""
    return locks.writing(workspace, ["crawl", unit], doing=f"crawling into {unit}")


def plan(config: CrawlConfig) -> tuple[Keywords, list[str], list[str], Engine, dict[str, str]]:
    """The keywords, emotions (and notes on those skipped), engine and its parameters of a crawl: every check that
    needs no workspace, so a mistake stops before anything (a lock file included) is written."""
    keywords = load_keywords(config.keywords)
    emotions, notes = _emotions(config, keywords)
    engine, params = _engine(config)
    return keywords, emotions, notes, engine, params


def run_crawl(workspace: Workspace, config: CrawlConfig,
              planned: tuple[Any, ...] | None = None) -> CrawlReport:
    """Crawl the keywords of the chosen emotion(s) on one engine into unit ``crawl--<engine>``.

    ``planned``: ``plan(config)``'s result when the caller planned already (``api.crawl`` does, to lock the unit
    across this crawl and the faces stage after it)."""
    started = time.perf_counter()
    keywords, emotions, notes, engine, params = planned or plan(config)
    unit = unit_for(engine.name)
    report = CrawlReport(engine.name, unit, emotions, keywords.path, config.max_per_keyword, notes=notes)
    if engine.status != "works":
        report.notes.append(f"{engine.name}: {engine.status}")
    workspace.ensure()
    from fusekit.crawl.politeness import Politeness

    politeness = Politeness(config.rules())
    with exclusive(workspace, unit):
        store = CrawlStore(workspace, config.retry_rejected)
        try:
            for emotion in emotions:
                for keyword in keywords.for_emotion(emotion):
                    report.searches.append(_search(engine, params, emotion, keyword, keywords, config, store,
                                                   politeness))
        finally:
            store.flush()
            stats = politeness.stats
            report.requests, report.robots_fetched, report.retries = sum(stats.requests.values()), \
                stats.robots_fetched, stats.retries
            report.seconds = time.perf_counter() - started
        report.stored_total = len({i for (e, emo, _k), ids in store.found.items()
                                   if e == engine.name and emo in emotions for i in ids})
        report.warnings.extend(_loud_problems(report))
        if report.stored_total == 0:
            raise CrawlFoundNothing(_nothing_message(report), report)
    report.seconds = time.perf_counter() - started
    return report


def _search(engine: Engine, params: dict[str, str], emotion: str, keyword: str, keywords: Keywords,
            config: CrawlConfig, store: CrawlStore, politeness: Politeness) -> SearchReport:
    query = keywords.query(engine.name, keyword)
    had = store.count(engine.name, emotion, keyword)
    item = SearchReport(engine.name, emotion, keyword, query, had, max(0, config.max_per_keyword - had))
    if item.target == 0:
        item.status = "complete"
        return item
    from fusekit.crawl.crawler import Search, SearchCrawler

    search = Search(engine, emotion, keyword, query, item.target, params, config.min_side, config.flush_every)
    crawler = SearchCrawler(search, store, politeness, config.threads, config.trust_env)
    try:
        crawler.crawl()
    except KeyboardInterrupt:
        item.status = "interrupted"
        raise
    finally:
        for name in ("results", "kept", "duplicates", "known", "skipped_rejected", "conflicts"):
            setattr(item, name, getattr(search, name))
        item.rejects = Counter(search.rejects)
        item.problems = list(search.page_problems)
        store.flush()
    if search.kept >= item.target:
        item.status = "done"
    elif search.empty_first_page:
        item.status = "empty"
    elif search.page_problems and search.pages_done <= 1 and search.results == 0:
        item.status = "failed"
    else:
        item.status = "exhausted"
    return item


def _loud_problems(report: CrawlReport) -> list[str]:
    lines = []
    for item in report.searches:
        if item.status in ("empty", "failed"):
            lines.append(f"{item.engine}: {item.keyword!r} ({item.emotion}): {'; '.join(item.problems)}"
                         + (" (the engine's page format may have changed)" if item.status == "empty" else ""))
        elif item.problems:
            lines.append(f"{item.engine}: {item.keyword!r} ({item.emotion}): stopped early: {'; '.join(item.problems)}")
    return lines


def _nothing_message(report: CrawlReport) -> str:
    searched = [s for s in report.searches if s.status != "complete"]
    results = sum(s.results for s in searched)
    if results == 0:
        broken = sum(s.status in ("empty", "failed") for s in searched)
        return (f"the crawl found nothing: {broken} of {len(searched)} {report.engine} searches returned result "
                f"pages with no pictures or failed (see the warnings above); the engine may have changed its pages "
                f"or refused us")
    rejects = reasons(report.rejects)
    return (f"the crawl found nothing it could keep: {results} results on {report.engine}, every one rejected or "
            f"skipped ({rejects or 'no rejects'})")


# -- reporting ---------------------------------------------------------------------------------------------------------
def format_report(report: CrawlReport) -> str:
    from fusekit.text import table

    lines = [f"crawl {report.engine} -> unit {report.unit}: {', '.join(report.emotions)}; keywords from "
             f"{report.keywords_path}; up to {report.max_per_keyword} pictures per keyword"]
    rows = []
    for s in report.searches:
        rejected = sum(s.rejects.values())
        rows.append([s.emotion, s.keyword, s.had, s.results, s.kept, s.duplicates + s.known, rejected,
                     s.skipped_rejected, s.status])
    if rows:
        lines.append(table(["emotion", "keyword", "had", "results", "new", "seen", "rejected", "skipped", "status"],
                           rows))
    rejects = report.rejects
    lines.append(f"{report.new_images:,} new pictures ({report.stored_total:,} in the workspace for these emotions), "
                 f"{sum(rejects.values()):,} rejected"
                 + (f" ({reasons(rejects)})" if rejects else "")
                 + f", {report.conflicts:,} label conflicts, {report.requests:,} requests "
                   f"({report.retries:,} retries, {report.robots_fetched:,} robots.txt), {report.seconds:.1f} s")
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def status_lines(workspace: Workspace) -> list[str]:
    """What `fusekit status` shows for crawling: pictures and faces per engine, emotion and keyword."""
    import json

    from fusekit.records import FACES_SCHEMA, IMAGES_SCHEMA, REJECTS_SCHEMA

    units = crawl_units(workspace)
    if not units:
        return []
    face_units = [u for u in workspace.units("faces") if u in units]
    faces_per_image: Counter[str] = Counter(
        workspace.read("faces", FACES_SCHEMA, units=face_units, columns=["image_id"]).column("image_id").to_pylist()
    ) if face_units else Counter()
    lines = ["crawled (web search; pictures / faces per keyword)" + ("" if face_units else
                                                                   " - faces not run yet")]
    for unit in units:
        table = workspace.read("images", IMAGES_SCHEMA, units=[unit], columns=["id", "label", "extra"])
        pictures: dict[str, Counter[str]] = defaultdict(Counter)
        faces: dict[str, Counter[str]] = defaultdict(Counter)
        conflicts = 0
        for image_id, label, extra in zip(*(table.column(c).to_pylist() for c in ("id", "label", "extra"))):
            data = json.loads(extra)
            keyword = data["provenance"][0]["keyword"]
            pictures[label][keyword] += 1
            faces[label][keyword] += faces_per_image.get(image_id, 0)
            conflicts += bool(data.get("label_conflict"))
        rejects = Counter(workspace.read("rejects", REJECTS_SCHEMA, units=[unit], columns=["reason"])
                          .column("reason").to_pylist()) if unit in workspace.units("rejects") else Counter()
        total_faces = sum(sum(c.values()) for c in faces.values())
        reject_text = reasons(rejects)
        lines.append(f"  {Unit.parse(unit).variant}: {table.num_rows:,} pictures, {total_faces:,} faces, "
                     f"{sum(rejects.values()):,} rejected" + (f" ({reject_text})" if reject_text else "")
                     + f", {conflicts:,} label conflicts")
        for label in [c for c in CLASSES if c in pictures]:
            per_keyword = ", ".join(f"{k} {pictures[label][k]}/{faces[label][k]}" for k in sorted(pictures[label]))
            lines.append(f"    {label}: {sum(pictures[label].values()):,} / {sum(faces[label].values()):,} "
                         f"({per_keyword})")
    return lines
