"""Politeness and safety for every request the crawler makes, as a `requests` transport adapter.

icrawler has no rate limit, no Retry-After, no robots.txt and no address checks, and it retries only exceptions,
at once (shared/notes/icrawler.md §5). ``PoliteAdapter`` is mounted on each crawler's session for http:// and
https://, so result pages, images and every redirect hop go through it. In order, per request:

1. only http(s) (a redirect to another scheme is refused as ``unsupported_scheme``); the host's addresses must be public unless explicitly allowed (``allow``), and inside ``only``
   when that is set (tests: loopback only, so nothing can reach the internet);
2. robots.txt of the origin (fetched once per run, RFC 9309: 4xx means no rules, 5xx/unreachable means disallow all);
3. a minimum interval between requests to one host, shared by all threads and crawlers of a run;
4. retries of timeouts, connection errors and HTTP 429/500/502/503/504 with exponential backoff, honouring
   ``Retry-After`` (which also pushes the host's next slot back for every thread) up to a ceiling;
5. the body read with a size cap and a wall-clock deadline.

Failures that are the crawler's decision raise ``Refused`` with a reason from ``records.REJECT_REASONS``.
Known limit: the address check resolves the name itself, before requests connects (a DNS answer that changes in
between is not caught).
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import socket
import threading
import time
import urllib.robotparser
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
ROBOTS_MAX_BYTES = 512 * 1024
AGENT_TOKEN = "fusekit"


class Refused(requests.RequestException):
    """A request fusekit will not make or a body it will not keep; ``reason`` is a REJECT_REASONS key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Rules:
    """The politeness settings of one run."""

    user_agent: str
    interval: float = 1.0  # seconds between two requests to one host
    timeout: float = 10.0  # connect and read timeout of one request
    max_seconds: float = 30.0  # wall-clock limit for one response body
    max_bytes: int = 20 * 1024 * 1024
    max_tries: int = 3
    backoff: float = 1.0  # first retry waits this long, then doubles
    retry_after_max: float = 60.0  # a longer Retry-After gives up instead of waiting
    allow: tuple[str, ...] = ()  # networks allowed although not public (e.g. 127.0.0.1/32 for a local engine)
    only: tuple[str, ...] | None = None  # when set, every address outside these networks is refused
    robots: bool = True


def _networks(specs: Iterable[str]) -> tuple[ipaddress._BaseNetwork, ...]:
    return tuple(ipaddress.ip_network(s.strip(), strict=False) for s in specs)


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # host -> requests sent (retries and robots included)
    retries: int = 0
    robots_fetched: int = 0
    waited: float = 0.0  # seconds slept for the interval, backoff and Retry-After


class Politeness:
    """State shared by every crawler of one run: per-host slots, robots.txt rules, resolved addresses, counts."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.allow = _networks(rules.allow)
        self.only = None if rules.only is None else _networks(rules.only)
        self.stats = Stats()
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self._addresses: dict[str, tuple[ipaddress._BaseAddress, ...]] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._robots_locks: dict[str, threading.Lock] = {}

    # -- addresses -------------------------------------------------------------------------------------------------
    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise Refused("unsupported_scheme", f"only http(s) URLs are fetched, not {parts.scheme or 'no'} scheme")
        host = parts.hostname
        if not host:
            raise Refused("unsupported_scheme", f"no host in {url!r}")
        for address in self._resolve(host):
            if self.only is not None and not any(address in net for net in self.only):
                raise Refused("address_refused", f"{host} ({address}) is outside the allowed networks "
                                                  f"{', '.join(map(str, self.only))}")
            if not address.is_global and not any(address in net for net in self.allow):
                raise Refused("address_refused", f"{host} resolves to the non-public address {address}")

    def _resolve(self, host: str) -> tuple[ipaddress._BaseAddress, ...]:
        cached = self._addresses.get(host)
        if cached is not None:
            return cached
        try:
            addresses: tuple[ipaddress._BaseAddress, ...] = (ipaddress.ip_address(host),)
        except ValueError:
            if self.only is not None:  # tests: never ask DNS about a name
                raise Refused("address_refused", f"{host} is not an address in {', '.join(map(str, self.only))}") \
                    from None
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except OSError as exc:
                raise requests.ConnectionError(f"cannot resolve {host}: {exc}") from None
            addresses = tuple(sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str))
        addresses = tuple(a.ipv4_mapped if getattr(a, "ipv4_mapped", None) else a for a in addresses)
        self._addresses[host] = addresses
        return addresses

    # -- the per-host interval -----------------------------------------------------------------------------------
    def wait_turn(self, host: str) -> None:
        """Reserve the host's next slot and sleep until it comes (threads queue up, one slot each)."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot.get(host, now))
            self._next_slot[host] = slot + self.rules.interval
            self.stats.requests[host] += 1
        if slot > now:
            self.stats.waited += slot - now
            time.sleep(slot - now)

    def push_back(self, host: str, seconds: float) -> None:
        """A 429/503 with Retry-After: no thread asks this host again before then."""
        with self._lock:
            self._next_slot[host] = max(self._next_slot.get(host, 0.0), time.monotonic() + seconds)

    # -- robots.txt ----------------------------------------------------------------------------------------------
    def robots_allows(self, url: str, fetch) -> bool:
        if not self.rules.robots:
            return True
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:
            parser = self._robots.get(origin)
            if parser is None:
                parser = self._robots[origin] = self._load_robots(origin, fetch)
        return parser.can_fetch(AGENT_TOKEN, url)

    def _load_robots(self, origin: str, fetch) -> urllib.robotparser.RobotFileParser:
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        self.stats.robots_fetched += 1
        try:
            status, text = fetch(origin + "/robots.txt")
        except (requests.RequestException, OSError):
            status, text = 599, ""
        if status == 200:
            parser.parse(text.splitlines())
        elif 400 <= status < 500:
            parser.allow_all = True  # no robots.txt: no rules
        else:
            parser.disallow_all = True  # unreachable robots.txt: assume complete disallow (RFC 9309 §2.3.1.4)
        parser.modified()  # can_fetch answers False until the parser has a timestamp
        return parser


_DIRECTIVES_WITH_COLON = {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}


def opt_out(headers: requests.structures.CaseInsensitiveDict | dict, agent: str = AGENT_TOKEN) -> str | None:
    """The X-Robots-Tag directive (``noai``/``noimageai``) that opts this response out for us, if any.

    Handles several headers joined by commas and user-agent prefixes (``otherbot: noai`` does not apply to us).
    """
    value = headers.get("X-Robots-Tag") if headers else None
    if not value:
        return None
    current = None
    for part in value.split(","):
        match = re.match(r"\s*([A-Za-z0-9_.*-]+)\s*:\s*(.*)$", part)
        if match and match.group(1).lower() not in _DIRECTIVES_WITH_COLON:
            current, part = match.group(1).lower(), match.group(2)
        directive = part.strip().lower()
        if directive in ("noai", "noimageai") and current in (None, "*", agent):
            return directive
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class PoliteAdapter(HTTPAdapter):
    """The transport every crawler request goes through (see the module docstring for what it enforces)."""

    def __init__(self, politeness: Politeness, pool_size: int = 8) -> None:
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.politeness = politeness

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: D102
        rules = self.politeness.rules
        self.politeness.check_url(request.url)
        host = urlsplit(request.url).hostname or ""
        if not self.politeness.robots_allows(request.url, lambda url: self._fetch_robots(url, request, verify,
                                                                                        cert, proxies)):
            raise Refused("robots_disallowed", f"{host}/robots.txt disallows {urlsplit(request.url).path or '/'} "
                                               f"for {AGENT_TOKEN}")
        timeout = timeout if timeout is not None else rules.timeout
        tries = max(1, rules.max_tries)
        for attempt in range(1, tries + 1):
            self.politeness.wait_turn(host)
            try:
                response = super().send(request, stream=True, timeout=timeout, verify=verify, cert=cert,
                                        proxies=proxies)
            except (requests.Timeout, requests.ConnectionError):
                if attempt == tries:
                    raise
                self._sleep(rules.backoff * 2 ** (attempt - 1))
                continue
            if response.status_code in RETRY_STATUSES and attempt < tries:
                delay = rules.backoff * 2 ** (attempt - 1)
                after = retry_after_seconds(response.headers.get("Retry-After"))
                if after is not None:
                    if after > rules.retry_after_max:
                        # Waiting that long would stall the crawl: give up on this URL, keep the host blocked.
                        self.politeness.push_back(host, min(after, rules.retry_after_max))
                        response.fusekit_note = (f"Retry-After {after:.0f} s exceeds the "
                                                 f"{rules.retry_after_max:g} s limit")
                        response.fusekit_tries = attempt
                        return self._read(response)
                    delay = max(delay, after)
                    self.politeness.push_back(host, after)
                response.close()
                self._sleep(delay)
                continue
            response.fusekit_tries = attempt
            self._check_redirect(request.url, response)
            return self._read(response, stream_requested=stream)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_redirect(self, url: str, response: requests.Response) -> None:
        """A redirect to anything but http(s) (``file://``, ``ftp://``...) is refused here, as ``unsupported_scheme``:
        requests would otherwise fail to find an adapter for it and raise InvalidSchema (read as a connection
        failure). http(s) hops come back through ``send`` and are checked like any request."""
        location = response.headers.get("Location") if response.is_redirect else None
        if not location:
            return
        target = urljoin(url, location)
        scheme = urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            response.close()
            shown = target if len(target) <= 120 else target[:120] + "..."
            raise Refused("unsupported_scheme", f"redirected to {shown}: only http(s) URLs are fetched, not "
                                                f"{scheme or 'no'} scheme")

    def _sleep(self, seconds: float) -> None:
        self.politeness.stats.retries += 1
        if seconds > 0:
            self.politeness.stats.waited += seconds
            time.sleep(seconds)

    def _read(self, response: requests.Response, stream_requested: bool = False) -> requests.Response:
        """Read the body into ``response._content`` within the size and time limits (or refuse it)."""
        rules = self.politeness.rules
        if getattr(response, "_content_consumed", False):
            return response
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > rules.max_bytes:
            response.close()
            raise Refused("too_large", f"Content-Length {int(length):,} bytes exceeds the {rules.max_bytes:,} limit")
        deadline = time.monotonic() + rules.max_seconds
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.raw.stream(64 * 1024, decode_content=True):
                size += len(chunk)
                if size > rules.max_bytes:
                    raise Refused("too_large", f"the body exceeds the {rules.max_bytes:,} byte limit")
                if time.monotonic() > deadline:
                    raise Refused("timeout", f"the body took longer than {rules.max_seconds:g} s")
                chunks.append(chunk)
        except Refused:
            response.close()
            raise
        except Exception as exc:  # urllib3 read errors: a read timeout mid-body, a dropped connection
            response.close()
            if "timed out" in str(exc).lower():
                raise requests.Timeout(f"read timed out mid-body: {exc}") from None
            raise requests.ConnectionError(f"connection broken mid-body: {exc}") from None
        response._content = b"".join(chunks)
        response._content_consumed = True
        response.close()
        return response

    def _fetch_robots(self, url: str, original, verify, cert, proxies) -> tuple[int, str]:
        """GET robots.txt (redirects followed up to 5 hops, each hop checked) without the robots check itself."""
        rules = self.politeness.rules
        for _ in range(5):
            self.politeness.check_url(url)
            self.politeness.wait_turn(urlsplit(url).hostname or "")
            prepared = requests.Request("GET", url, headers={"User-Agent": original.headers.get("User-Agent", "")}) \
                .prepare()
            response = super().send(prepared, stream=True, timeout=rules.timeout, verify=verify, cert=cert,
                                    proxies=proxies)
            if response.is_redirect and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            if response.status_code != 200:
                response.close()
                return response.status_code, ""
            body = response.raw.read(ROBOTS_MAX_BYTES + 1, decode_content=True)
            response.close()
            return 200, body[:ROBOTS_MAX_BYTES].decode("utf-8", "replace")
        return 599, ""
