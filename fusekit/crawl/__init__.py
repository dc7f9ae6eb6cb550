"""Crawling image search engines for faces, politely and with full provenance (`fusekit crawl`).

Modules: ``keywords`` (keywords.yaml), ``engines`` (result-page URLs and parsers), ``politeness`` (the transport
rules), ``crawler`` (icrawler threads with fusekit's feeder/parser/downloader), ``store`` (append-only `images` and
`rejects` parts, the index of what is known), ``stage`` (the run), ``standin`` (a local stand-in engine for the demo).
"""

from __future__ import annotations

from fusekit.crawl.keywords import Keywords, load_keywords
from fusekit.crawl.stage import (
    CrawlConfig,
    CrawlFoundNothing,
    CrawlReport,
    SearchReport,
    format_report,
    run_crawl,
    status_lines,
)
from fusekit.crawl.standin import STANDIN_LABEL, StandinEngine, demo_crawl

__all__ = [
    "CrawlConfig",
    "CrawlFoundNothing",
    "CrawlReport",
    "Keywords",
    "SearchReport",
    "STANDIN_LABEL",
    "StandinEngine",
    "demo_crawl",
    "format_report",
    "load_keywords",
    "run_crawl",
    "status_lines",
]
