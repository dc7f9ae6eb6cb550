"""`fusekit crawl`: parse the flags, call `fusekit.api.crawl` (the crawl, then the faces of its unit), print the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fusekit.cli import _echo, _workspace, app


@app.command()
def crawl(
    emotion: str = typer.Option(..., "--emotion", "-e", help="A canonical emotion (angry, disgust, fear, happy, sad, "
                                                             "surprise, neutral, contempt) or all."),
    engine: str = typer.Option("bing", "--engine", help="bing (default), baidu, google (best effort) or flickr "
                                                         "(API key in $FLICKR_API_KEY)."),
    max_per_keyword: int = typer.Option(100, "--max-per-keyword", "-n",
                                        help="Pictures to keep per keyword, earlier runs included."),
    keywords: Optional[Path] = typer.Option(None, "--keywords", help="Keyword file (default: ./keywords.yaml, "
                                                                      "else the one shipped with fusekit)."),
    no_faces: bool = typer.Option(False, "--no-faces", help="Do not run face detection afterwards."),
    contact: Optional[str] = typer.Option(None, "--contact", envvar="FUSEKIT_CRAWL_CONTACT",
                                          help="Contact URL named in the User-Agent."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between two requests to one host."),
    threads: int = typer.Option(4, "--threads", help="Download threads."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for a connection or a read."),
    retry_rejected: bool = typer.Option(False, "--retry-rejected",
                                        help="Fetch again URLs that failed for a passing reason (HTTP error, "
                                             "timeout) on an earlier run."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Another base URL for the engine's result "
                                                                    "pages (a mirror, a local stand-in)."),
    allow_address: list[str] = typer.Option([], "--allow-address",
                                            help="A private or loopback address/network that may be fetched "
                                                 "(repeatable; refused by default)."),
) -> None:
    """Search the web for pictures of an emotion's keywords (keywords.yaml), politely, and store them with provenance."""
    from fusekit import api
    from fusekit.crawl import CrawlConfig, CrawlFoundNothing, format_report
    from fusekit.crawl.stage import DEFAULT_CONTACT

    config = CrawlConfig.from_mapping(dict(emotion=emotion.strip().lower(), engine=engine.strip().lower(),
                         max_per_keyword=max_per_keyword, keywords=keywords, faces=not no_faces,
                         contact=contact or DEFAULT_CONTACT, interval=interval, threads=threads, timeout=timeout,
                         retry_rejected=retry_rejected, endpoint=endpoint, allow_addresses=tuple(allow_address)))
    try:
        run = api.crawl(_workspace(), config)
    except CrawlFoundNothing as exc:
        _echo(format_report(exc.report))
        raise
    _echo(run.render())
