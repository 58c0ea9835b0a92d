"""Polite, guarded HTTP fetching for the scraping specialist (aiohttp).

:class:`Fetcher` fetches one URL at a time on a shared session:

* every URL and every redirect hop is checked by the :class:`~agents.fetch.guard.SsrfGuard`,
  and the connector resolves through :class:`~agents.fetch.guard.GuardedResolver`;
* robots.txt is fetched once per host and obeyed (RFC 9309: a 4xx robots.txt
  allows everything, a 5xx or unreachable one disallows everything);
* per-host concurrency (a semaphore) and rate (requests started per second);
* conditional GET: the ETag and Last-Modified of each URL are kept and sent
  back; a 304 is reported as ``not_modified``;
* caps on the body as sent, on the decompressed body (a gzip bomb stops at
  the cap) and on the time of the whole fetch, redirects included;
* only text content types (HTML, XML feeds, JSON, plain text);
* transient failures (connection errors, 429, 5xx) are retried with tenacity,
  with exponential backoff and jitter.

Example:
    >>> from agents.fetch.fetcher import FetchSettings
    >>> FetchSettings().per_host_concurrency
    4
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.robotparser
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)
from yarl import URL

from agents.fetch.guard import (
    FetchRefused,
    GuardedResolver,
    GuardSettings,
    SsrfGuard,
    refused_reason,
)
from swarm.errors import ConfigError, TransportError

__all__ = [
    "FetchError", "FetchResult", "FetchSettings", "Fetcher", "HostLimiter", "fetch_settings",
]

_TEXT_TYPES = (
    "text/", "application/json", "application/feed+json", "application/rss+xml",
    "application/atom+xml", "application/xml", "application/xhtml+xml", "application/rdf+xml",
    "application/ld+json",
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchError(TransportError):
    """A fetch failed (after its retries, when the failure was transient)."""


class _Transient(FetchError):
    """A failure worth retrying: connection error, 429 or 5xx."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchSettings:
    """Limits of a :class:`Fetcher`.

    Attributes:
        guard: What the SSRF guard lets through (local networks stay refused by default).
        user_agent: Sent with every request and matched against robots.txt.
        per_host_concurrency: Requests in flight per host.
        per_host_rate: Requests started per second per host.
        max_body: Bytes of body as sent (compressed) at most.
        max_decompressed: Bytes of body after decompression at most.
        timeout: Seconds for a whole fetch, redirects included.
        max_redirects: Redirect hops followed.
        attempts: Tries per fetch for transient failures.
        obey_robots: Fetch and obey robots.txt.
    """

    guard: GuardSettings = field(default_factory=GuardSettings)
    user_agent: str = "queenswarm-tge/0.1 (+https://github.com/queenswarm)"
    per_host_concurrency: int = 4
    per_host_rate: float = 10.0
    max_body: int = 2 * 1024 * 1024
    max_decompressed: int = 8 * 1024 * 1024
    timeout: float = 20.0
    max_redirects: int = 5
    attempts: int = 3
    obey_robots: bool = True


def fetch_settings(table: dict[str, Any]) -> FetchSettings:
    """Settings from a ``[fetch]`` table (``allow`` is the guard's allow-list).

    Raises:
        ConfigError: An unknown key or a value of the wrong type.
    """
    known = {f for f in FetchSettings.__dataclass_fields__ if f != "guard"}
    unknown = set(table) - known - {"allow"}
    if unknown:
        raise ConfigError(f"[fetch]: unknown settings {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "allow":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError("[fetch] allow must be a list of networks, e.g. ['10.0.0.0/8']")
            values["guard"] = GuardSettings(allow=tuple(value))
            continue
        default = getattr(FetchSettings(), key)
        if isinstance(default, bool) != isinstance(value, bool) or not isinstance(
            value, (type(default), int) if isinstance(default, float) else type(default)
        ):
            raise ConfigError(f"[fetch] {key} must be a {type(default).__name__}")
        values[key] = value
    return FetchSettings(**values)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """One fetched URL.

    Attributes:
        url: The URL asked for.
        final_url: Where the body came from, after redirects.
        status: HTTP status of the final response.
        content_type: Its media type (lower case, no parameters).
        text: The decoded body ("" when not modified).
        not_modified: The server answered 304 to a conditional GET.
        redirects: The hops followed.
    """

    url: str
    final_url: str
    status: int
    content_type: str
    text: str
    not_modified: bool = False
    redirects: tuple[str, ...] = ()


class HostLimiter:
    """Per-host concurrency and start rate.

    ``async with limiter.slot(host)`` waits for one of the host's
    ``concurrency`` slots and for the host's next start time (``1/rate``
    after the previous start).
    """

    def __init__(self, concurrency: int, rate: float) -> None:
        self.concurrency = concurrency
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._next: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        sem = self._sems.setdefault(host, asyncio.Semaphore(self.concurrency))
        async with sem:
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + self.interval
            if start > now:
                await asyncio.sleep(start - now)  # pacing: the host's next start time
            yield


class _Body:
    """Reads a body within both caps, decompressing gzip/deflate itself."""

    def __init__(self, encoding: str, settings: FetchSettings) -> None:
        self.settings = settings
        enc = encoding.lower().strip()
        if enc in ("", "identity"):
            self._z: Any = None
        elif enc in ("gzip", "x-gzip", "deflate"):
            self._z = zlib.decompressobj(47)  # gzip or zlib header, detected
        else:
            raise FetchError(f"unsupported content encoding {encoding!r}")
        self.raw = 0
        self.out: list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        if self.raw > self.settings.max_body:
            raise FetchError(f"body larger than {self.settings.max_body} bytes")
        data = chunk
        if self._z is not None:
            room = self.settings.max_decompressed - self.size + 1
            data = self._z.decompress(chunk, room)
            if self._z.unconsumed_tail:
                raise FetchError(
                    f"decompressed body larger than {self.settings.max_decompressed} bytes"
                )
        self.size += len(data)
        if self.size > self.settings.max_decompressed:
            raise FetchError(
                f"decompressed body larger than {self.settings.max_decompressed} bytes"
            )
        self.out.append(data)

    def bytes(self) -> bytes:
        if self._z is not None:
            self.out.append(self._z.flush())
        return b"".join(self.out)


class Fetcher:
    """Guarded, polite fetching on one aiohttp session (see the module docstring).

    Use as ``async with Fetcher(settings) as f: await f.fetch(url)``.
    """

    def __init__(self, settings: FetchSettings | None = None) -> None:
        self.settings = settings or FetchSettings()
        self.guard = SsrfGuard(self.settings.guard)
        self.limiter = HostLimiter(self.settings.per_host_concurrency, self.settings.per_host_rate)
        self.validators: dict[str, tuple[str | None, str | None]] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | bool] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.guard),
            limit=0,
            limit_per_host=self.settings.per_host_concurrency,
            ttl_dns_cache=60,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            headers={"User-Agent": self.settings.user_agent,
                     "Accept-Encoding": "gzip, deflate"},
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str) -> FetchResult:
        """Fetch ``url`` within every limit.

        Raises:
            FetchRefused: The guard or robots.txt refused the URL or a redirect hop.
            FetchError: The fetch failed (after retries when transient), or broke a cap.
        """
        why = self.guard.check_url(url)
        if why is not None:
            raise FetchRefused(url, why)
        try:
            async with asyncio.timeout(self.settings.timeout):
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(self.settings.attempts),
                    wait=wait_random_exponential(multiplier=0.05, max=2.0),
                    retry=retry_if_exception_type(_Transient),
                    reraise=True,
                ):
                    with attempt:
                        return await self._follow(url)
        except TimeoutError as exc:
            raise FetchError(f"{url}: no complete answer within {self.settings.timeout}s") from exc
        except _Transient as exc:
            raise FetchError(str(exc)) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _follow(self, url: str) -> FetchResult:
        hops: list[str] = []
        current = URL(url)
        while True:
            why = self.guard.check_url(current)
            if why is not None:
                raise FetchRefused(str(current), why)
            if self.settings.obey_robots and not await self._robots_allow(current):
                raise FetchRefused(str(current), "disallowed by robots.txt")
            status, location, result = await self._one(url, current, hops)
            if result is not None:
                return result
            if len(hops) >= self.settings.max_redirects:
                raise FetchError(f"{url}: more than {self.settings.max_redirects} redirects")
            if not location:
                raise FetchError(f"{current}: redirect {status} without Location")
            current = current.join(URL(location))
            hops.append(str(current))

    async def _one(
        self, url: str, target: URL, hops: list[str]
    ) -> tuple[int, str, FetchResult | None]:
        assert self._session is not None, "use Fetcher as an async context manager"
        headers: dict[str, str] = {}
        etag, modified = self.validators.get(str(target), (None, None))
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        host = target.host or ""
        try:
            async with (
                self.limiter.slot(f"{host}:{target.port}"),
                self._session.get(target, headers=headers, allow_redirects=False) as resp,
            ):
                status = resp.status
                if status in _REDIRECTS:
                    return status, resp.headers.get("Location", ""), None
                if status == 304:
                    return status, "", FetchResult(
                        url, str(target), status, "", "", not_modified=True, redirects=tuple(hops)
                    )
                if status == 429 or status >= 500:
                    raise _Transient(f"{target}: HTTP {status}")
                if status >= 400:
                    raise FetchError(f"{target}: HTTP {status}")
                ctype = resp.content_type.lower()
                if not ctype.startswith(_TEXT_TYPES):
                    raise FetchRefused(str(target), f"content type {ctype!r} is not text")
                length = resp.content_length
                if length is not None and length > self.settings.max_body:
                    raise FetchError(f"{target}: body of {length} bytes exceeds the cap")
                body = _Body(resp.headers.get("Content-Encoding", ""), self.settings)
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body.feed(chunk)
                raw = body.bytes()
                text = raw.decode(resp.charset or "utf-8", errors="replace")
                self.validators[str(target)] = (
                    resp.headers.get("ETag"), resp.headers.get("Last-Modified")
                )
                return status, "", FetchResult(
                    url, str(target), status, ctype, text, redirects=tuple(hops)
                )
        except aiohttp.ClientConnectorError as exc:
            reason = refused_reason(exc)
            if reason is not None:
                raise FetchRefused(str(target), reason) from exc
            raise _Transient(f"{target}: cannot connect: {exc.os_error}") from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise _Transient(f"{target}: connection broke: {exc}") from exc
        except aiohttp.ClientError as exc:
            reason = refused_reason(exc)
            if reason is not None:
                raise FetchRefused(str(target), reason) from exc
            raise FetchError(f"{target}: {type(exc).__name__}: {exc}") from exc

    async def _robots_allow(self, target: URL) -> bool:
        key = f"{target.scheme}://{target.host}:{target.port}"
        lock = self._robots_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._robots:
                self._robots[key] = await self._load_robots(URL(key + "/robots.txt"))
        rules = self._robots[key]
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(self.settings.user_agent, str(target))

    async def _load_robots(self, url: URL) -> urllib.robotparser.RobotFileParser | bool:
        assert self._session is not None
        try:
            async with (
                self.limiter.slot(f"{url.host}:{url.port}"),
                self._session.get(url, allow_redirects=True, max_redirects=3) as resp,
            ):
                if 400 <= resp.status < 500:
                    return True  # RFC 9309: no robots.txt, no rules
                if resp.status >= 300:
                    return False  # unreachable robots.txt: assume complete disallow
                body = _Body(resp.headers.get("Content-Encoding", ""), self.settings)
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body.feed(chunk)
                text = body.bytes().decode("utf-8", errors="replace")
        except (aiohttp.ClientError, FetchError, OSError):
            return False
        parser = urllib.robotparser.RobotFileParser()
        parser.parse(text.splitlines())
        return parser
