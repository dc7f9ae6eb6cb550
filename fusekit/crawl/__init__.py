"""Crawling image search engines for faces, politely and with full provenance (`fusekit crawl`).

Modules: ``keywords`` (keywords.yaml), ``engines`` (result-page URLs and parsers), ``politeness`` (the transport
rules), ``crawler`` (icrawler threads with fusekit's feeder/parser/downloader), ``store`` (append-only `images` and
`rejects` parts, the index of what is known), ``stage`` (the run), ``standin`` (a local HTTP engine on 127.0.0.1, the base of the demo's and the tests' stand-ins).

Names are loaded on first use, and ``stage`` imports the transport (requests, icrawler, bs4) only when it crawls, so
that `fusekit status` (which imports ``fusekit.crawl.stage`` for its section) pays for none of it.
"""

from __future__ import annotations

from fusekit import lazy

__all__, __getattr__ = lazy.exports(__name__, {
    "Keywords": "fusekit.crawl.keywords",
    "load_keywords": "fusekit.crawl.keywords",
    "CrawlConfig": "fusekit.crawl.stage",
    "CrawlFoundNothing": "fusekit.crawl.stage",
    "CrawlReport": "fusekit.crawl.stage",
    "SearchReport": "fusekit.crawl.stage",
    "format_report": "fusekit.crawl.stage",
    "run_crawl": "fusekit.crawl.stage",
    "status_lines": "fusekit.crawl.stage",
    "STANDIN_LABEL": "fusekit.crawl.standin",
})
