"""Scraping efficiency: fetches and parses sources, with per-source stats and dedupe.

Each :class:`~agents.messages.ScrapeSource` task fetches one source (the
task carries it: inline posts, or a live source's URL), asks the
API-reliability role whether the source's circuit is closed, reports the
fetch outcome to it, parses raw entries into
:class:`~agents.messages.Document` values (counting malformed ones), and drops
exact re-posts by content hash. A failed fetch raises, so the runtime retries
it with backoff; a source whose circuit is open is skipped, not hammered.

Example:
    >>> from agents.scraping import content_hash
    >>> content_hash("Hello  World", "x") == content_hash("hello world", "X")
    True
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, ClassVar

from yarl import URL

from agents.corpus import SourceSpec, SourceUnavailable
from agents.fetch import Fetcher, FetchError, FetchRefused, FetchSettings, fetch_settings
from agents.fetch.parse import parse_feed, parse_html, parse_json
from agents.messages import (
    CheckCircuit,
    CircuitStatus,
    Document,
    RecordFetch,
    ScrapeResult,
    ScrapeSource,
    SourceStats,
)
from agents.neardup import simhash
from swarm.agent import Agent, TaskContext, handler
from swarm.errors import ConfigError, Reject

__all__ = ["ScrapingEfficiencyAgent", "content_hash"]


_KINDS = ("inline", "rss", "json", "html")


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def content_hash(title: str, body: str) -> str:
    """SHA-256 of the case- and whitespace-normalised title and body."""
    return hashlib.sha256(f"{_normalise(title)}\n{_normalise(body)}".encode()).hexdigest()


def _parse(source_id: str, index: int, entry: Any) -> Document | str:
    """A document, or the id under which a malformed entry is reported."""
    if not isinstance(entry, dict):
        return f"{source_id}#{index}"
    doc_id = entry.get("id")
    if not isinstance(doc_id, str) or not doc_id:
        return f"{source_id}#{index}"
    title, body = entry.get("title"), entry.get("body")
    if not isinstance(title, str) or not isinstance(body, str):
        return doc_id
    if not (title.strip() or body.strip()):
        return doc_id
    published, url = entry.get("published", ""), entry.get("url", "")
    return Document(
        doc_id=doc_id, source_id=source_id, title=title.strip(), body=body.strip(),
        published=published if isinstance(published, str) else "",
        url=url if isinstance(url, str) else "",
        content_hash=content_hash(title, body), simhash=simhash(f"{title}\n{body}"),
    )


class ScrapingEfficiencyAgent(Agent):
    """Fetches and parses sources.

    Args:
        reliability_role: Role consulted for circuit state and told of fetch
            outcomes; ``None`` to scrape without one.
        **kwargs: Passed to :class:`~swarm.agent.Agent`.

    Attributes:
        stats: The latest :class:`~agents.messages.SourceStats` per source.
    """

    role: ClassVar[str] = "scraping_efficiency"

    def __init__(
        self,
        *,
        reliability_role: str | None = "api_reliability",
        fetch: FetchSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reliability_role = reliability_role
        self.fetch_settings = fetch or FetchSettings()
        self.stats: dict[str, SourceStats] = {}
        self._fetchers: dict[str, Fetcher] = {}

    async def on_stop(self) -> None:
        fetchers, self._fetchers = self._fetchers, {}
        for f in fetchers.values():
            await f.__aexit__(None, None, None)

    async def _fetcher(self, table: dict[str, Any]) -> Fetcher:
        """One fetcher (session, limits, robots and validator caches) per fetch table."""
        key = json.dumps(table, sort_keys=True)
        fetcher = self._fetchers.get(key)
        if fetcher is None:
            try:
                settings = fetch_settings(table) if table else self.fetch_settings
            except ConfigError as exc:
                raise Reject(str(exc)) from exc
            fetcher = self._fetchers[key] = await Fetcher(settings).__aenter__()
        return fetcher

    async def _live(self, msg: ScrapeSource) -> tuple[Any, ...] | None:
        """Fetch and parse a live source; None when the server says not modified.

        Raises:
            Reject: The guard or robots.txt refused the URL, or the body is unreadable.
            FetchError: The fetch failed (the task is retried).
        """
        fetcher = await self._fetcher(msg.fetch)
        try:
            got = await fetcher.fetch(msg.url)
        except FetchRefused as exc:
            raise Reject(f"source {msg.source_id!r}: {exc}") from exc
        if got.not_modified:
            return None
        try:
            if msg.kind == "rss":
                return tuple(parse_feed(got.text))
            if msg.kind == "json":
                return tuple(parse_json(
                    got.text, items=str(msg.options.get("items", "")),
                    fields=dict(msg.options.get("fields", {})),
                ))
            return tuple(parse_html(got.text, got.final_url))
        except ValueError as exc:
            raise Reject(f"source {msg.source_id!r}: unreadable {msg.kind} body: {exc}") from exc

    @handler
    async def scrape(self, msg: ScrapeSource, ctx: TaskContext) -> ScrapeResult:
        """Fetch, parse and dedupe one source."""
        started = time.perf_counter()
        if msg.kind not in _KINDS:
            raise Reject(f"source {msg.source_id!r}: unsupported kind {msg.kind!r}")
        spec = SourceSpec(
            id=msg.source_id, name=msg.source_id, posts=tuple(msg.posts),
            flaky_failures=msg.flaky_failures, down=msg.down,
        )
        # A live source's circuit is its host's: every source on a failing host waits.
        breaker = f"host:{URL(msg.url).host}" if msg.kind != "inline" else spec.id
        if self.reliability_role is not None:
            status: CircuitStatus = await ctx.send(
                CheckCircuit(source_id=breaker), to=f"role:{self.reliability_role}"
            )
            if not status.allowed:
                stats = SourceStats(
                    source_id=spec.id, attempts=ctx.attempt, skipped=f"circuit {status.state}"
                )
                self.stats[spec.id] = stats
                ctx.log.info("source skipped", source_id=spec.id, circuit=status.state.value)
                return ScrapeResult(stats=stats, elapsed_ms=_ms_since(started))
        fetch_started = time.perf_counter()
        try:
            fetched = spec.fetch(ctx.attempt) if msg.kind == "inline" else await self._live(msg)
        except (SourceUnavailable, FetchError) as exc:
            ctx.log.info("fetch failed", source_id=spec.id, error=str(exc))
            await self._record(ctx, breaker, ok=False, error=str(exc), started=fetch_started)
            raise
        await self._record(ctx, breaker, ok=True, error="", started=fetch_started)
        if fetched is None:
            stats = SourceStats(source_id=spec.id, attempts=ctx.attempt, skipped="not modified")
            self.stats[spec.id] = stats
            return ScrapeResult(stats=stats, elapsed_ms=_ms_since(started))
        raw = fetched

        documents: list[Document] = []
        malformed: list[str] = []
        seen: set[str] = set()
        duplicates = 0
        for index, entry in enumerate(raw):
            parsed = _parse(spec.id, index, entry)
            if isinstance(parsed, str):
                malformed.append(parsed)
            elif parsed.content_hash in seen:
                duplicates += 1
            else:
                seen.add(parsed.content_hash)
                documents.append(parsed)
        stats = SourceStats(
            source_id=spec.id, fetched=len(raw), parsed=len(raw) - len(malformed),
            malformed=len(malformed), duplicates=duplicates, attempts=ctx.attempt,
            malformed_ids=malformed,
        )
        self.stats[spec.id] = stats
        ctx.log.debug(
            "scraped", source_id=spec.id, documents=len(documents), malformed=len(malformed),
            duplicates=duplicates,
        )
        return ScrapeResult(stats=stats, documents=documents, elapsed_ms=_ms_since(started))

    async def _record(
        self, ctx: TaskContext, source_id: str, *, ok: bool, error: str, started: float
    ) -> None:
        if self.reliability_role is None:
            return
        await ctx.send(
            RecordFetch(source_id=source_id, ok=ok, error=error, latency_ms=_ms_since(started)),
            to=f"role:{self.reliability_role}",
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
