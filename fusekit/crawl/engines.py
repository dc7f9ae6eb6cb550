"""Search engines: how to ask for a result page, and how to read one. Pure functions, no network.

fusekit owns the page URLs and the parsers (engines change their markup; icrawler 0.6.10's parsers have known
gaps, shared/notes/icrawler.md §0/§3) and keeps icrawler for the threads, queues and downloads (``crawler.py``).
Fixes over the stock parsers: Bing reads the whole ``m`` JSON (any extension, query string kept, page URL),
keywords are URL-encoded, Google always returns a list (its stock parser returns None and kills the thread),
Flickr takes the picture URLs from the search answer (``extras``) instead of one extra API call per photo.

``standin`` reads Bing's markup from a local server: the demo's stand-in engine, never a real search engine.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class Result:
    """One picture a result page points at."""

    url: str
    rank: int  # 0-based position in the engine's result list for this query
    page_url: str | None = None  # the page the picture appears on, when the engine says
    title: str | None = None


@dataclass(frozen=True)
class Engine:
    name: str
    base_url: str
    step: int  # results per page
    max_results: int  # the engine serves no more than this many results per query
    build: Callable[["Engine", str, int, dict[str, str]], str]
    parse: Callable[[bytes, int], list[Result]]
    headers: dict[str, str] = field(default_factory=dict)
    status: str = "works"
    needs_key: str | None = None  # the environment variable holding an API key

    def page_url(self, query: str, offset: int, params: dict[str, str] | None = None) -> str:
        return self.build(self, query, offset, params or {})


# -- Bing -----------------------------------------------------------------------------------------------------------
# Filters: photographs with a face in them (Bing's own face filter).
BING_FILTERS = "+filterui:photo-photo+filterui:face-face"
_MURL = re.compile(r'"murl"\s*:\s*"(.*?)"')


def _bing_url(engine: Engine, query: str, offset: int, params: dict[str, str]) -> str:
    return f"{engine.base_url}?{urlencode({'q': query, 'first': offset, 'count': engine.step, 'qft': BING_FILTERS})}"


def parse_bing(content: bytes, offset: int) -> list[Result]:
    """Bing's ``/images/async`` markup: ``<div class="imgpt"><a class="iusc" m="{json}">``."""
    from bs4 import BeautifulSoup  # 170 ms of import: only a Bing crawl needs it

    soup = BeautifulSoup(content.decode("utf-8", "ignore"), "lxml")
    results: list[Result] = []
    for anchor in soup.select("div.imgpt a[m]"):
        meta_text = html.unescape(anchor["m"])
        try:
            meta = json.loads(meta_text)
        except ValueError:
            match = _MURL.search(meta_text)
            meta = {"murl": json.loads(f'"{match.group(1)}"')} if match else {}
        url = meta.get("murl")
        if isinstance(url, str) and url:
            results.append(Result(url, offset + len(results), meta.get("purl") or None, meta.get("t") or None))
    return results


# -- Baidu ----------------------------------------------------------------------------------------------------------
def baidu_decode(text: str) -> str:
    """Undo Baidu's ``objURL`` obfuscation (the same table as icrawler's ``BaiduParser._decode_url``)."""
    from icrawler.builtin.baidu import BaiduParser

    return BaiduParser._decode_url(None, text)


def _baidu_url(engine: Engine, query: str, offset: int, params: dict[str, str]) -> str:
    query_string = urlencode({"tn": "resultjson_com", "ipn": "rj", "word": query, "pn": offset, "rn": engine.step})
    return f"{engine.base_url}?{query_string}"


def parse_baidu(content: bytes, offset: int) -> list[Result]:
    """Baidu's ``acjson`` JSON: ``data[]`` with ``objURL`` (obfuscated) or ``hoverURL``; no ``data``: nothing."""
    try:
        data = json.loads(content.decode("utf-8", "ignore").replace("\\'", "'"), strict=False)
    except ValueError:
        return []
    items = data.get("data") if isinstance(data, dict) else None
    results: list[Result] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("objURL"):
            url = baidu_decode(item["objURL"])
        elif item.get("hoverURL"):
            url = item["hoverURL"]
        else:
            continue
        page = baidu_decode(item["fromURL"]) if item.get("fromURL") else None
        results.append(Result(url, offset + len(results), page, item.get("fromPageTitleEnc") or None))
    return results


# -- Google (best effort: its markup has broken icrawler repeatedly, see the notes §3) -------------------------------
_GOOGLE_URL = re.compile(r"https?://[^\s\"'\[\]\\<>]+?\.(?:jpg|jpeg|png|bmp|webp)", re.IGNORECASE)


def _google_url(engine: Engine, query: str, offset: int, params: dict[str, str]) -> str:
    query_string = urlencode({"q": query, "ijn": offset // engine.step, "start": offset, "tbm": "isch"})
    return f"{engine.base_url}?{query_string}"


def parse_google(content: bytes, offset: int) -> list[Result]:
    text = content.decode("utf-8", "ignore")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", text, re.DOTALL)
    seen: dict[str, None] = {}
    for script in scripts:
        for url in _GOOGLE_URL.findall(script.encode().decode("unicode-escape", "ignore")):
            if "gstatic.com" not in url and "google.com" not in url:
                seen.setdefault(url, None)
    return [Result(url, offset + i) for i, url in enumerate(seen)]


# -- Flickr (official REST API; needs a key) ---------------------------------------------------------------------------
FLICKR_SIZES = ("url_b", "url_c", "url_z", "url_m")


def _flickr_url(engine: Engine, query: str, offset: int, params: dict[str, str]) -> str:
    query_string = urlencode({
        "method": "flickr.photos.search", "api_key": params.get("api_key", ""), "text": query, "sort": "relevance",
        "content_type": 1, "media": "photos", "per_page": engine.step, "page": offset // engine.step + 1,
        "extras": ",".join(FLICKR_SIZES + ("license", "owner_name")), "format": "json", "nojsoncallback": 1,
    })
    return f"{engine.base_url}?{query_string}"


def parse_flickr(content: bytes, offset: int) -> list[Result]:
    try:
        data = json.loads(content.decode("utf-8", "ignore"))
    except ValueError:
        return []
    if not isinstance(data, dict) or data.get("stat") != "ok":
        return []
    results: list[Result] = []
    for photo in (data.get("photos") or {}).get("photo") or []:
        url = next((photo[k] for k in FLICKR_SIZES if photo.get(k)), None)
        if url:
            page = f"https://www.flickr.com/photos/{photo.get('owner')}/{photo.get('id')}"
            results.append(Result(url, offset + len(results), page, photo.get("title") or None))
    return results


def public_url(url: str) -> str:
    """A page URL safe to record: API keys removed from the query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in ("api_key",)]
    return urlunsplit(parts._replace(query=urlencode(query)))


ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}
ENGINES: dict[str, Engine] = {
    "bing": Engine("bing", "https://www.bing.com/images/async", 35, 1000, _bing_url, parse_bing, ENGLISH),
    # Baidu answers its anti-spider JSON without a Chinese Accept-Language (icrawler 0.6.10's fix, PR #131).
    "baidu": Engine("baidu", "https://image.baidu.com/search/acjson", 30, 1000, _baidu_url, parse_baidu,
                    {"Accept-Language": "zh-CN,zh;q=0.8,en-US;q=0.3,en;q=0.2"}),
    "google": Engine("google", "https://www.google.com/search", 100, 1000, _google_url, parse_google, ENGLISH,
                     status="best effort: Google's result pages have broken every parser so far"),
    "flickr": Engine("flickr", "https://api.flickr.com/services/rest/", 100, 4000, _flickr_url, parse_flickr,
                     ENGLISH, needs_key="FLICKR_API_KEY"),
    # The demo's local stand-in: Bing's markup, served by fusekit.crawl.standin on 127.0.0.1.
    "standin": Engine("standin", "http://127.0.0.1/bing/images/async", 20, 1000, _bing_url, parse_bing, ENGLISH,
                      status="a local stand-in for the demo and tests, not a search engine"),
}
PUBLIC_ENGINES = ("bing", "baidu", "google", "flickr")
