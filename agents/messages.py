"""Typed payloads of the stock TGE pipeline.

Task messages (what a stage is asked to do) and their results are frozen
msgspec structs, so they cross any runtime unchanged. Wire names carry a
``tge.`` prefix so they cannot collide with user message types.

Example:
    >>> from agents.messages import ScrapeSource
    >>> ScrapeSource(source_id="cryptowire").type_name
    'tge.scrape'
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import msgspec

from swarm.llm.accounting import Usage
from swarm.messages import Message

__all__ = [
    "AnalyzeTimings",
    "Announcement",
    "Candidate",
    "CheckCircuit",
    "CircuitState",
    "CircuitStatus",
    "Document",
    "ModelUse",
    "PerformanceReport",
    "QualityReport",
    "RecordFetch",
    "RejectedCandidate",
    "ReliabilityQuery",
    "ReliabilityReport",
    "ScoreDocuments",
    "ScoreResult",
    "ScrapeResult",
    "ScrapeSource",
    "SourceReliability",
    "SourceStats",
    "StageStats",
    "StageTiming",
    "ValidateCandidates",
]


class Document(msgspec.Struct, frozen=True, kw_only=True):
    """One parsed post.

    Attributes:
        doc_id: Id of the post within the corpus.
        source_id: The source it was scraped from.
        title: Headline.
        body: Text.
        published: Publication timestamp as given by the source.
        url: Link to the post.
        content_hash: SHA-256 of the normalised title and body (dedupe key).
        simhash: SimHash of title and body (near-duplicate key, :mod:`agents.neardup`).
    """

    doc_id: str
    source_id: str
    title: str
    body: str
    published: str = ""
    url: str = ""
    content_hash: str = ""
    simhash: int = 0


class SourceStats(msgspec.Struct, frozen=True, kw_only=True):
    """What scraping one source produced.

    Attributes:
        source_id: The source.
        fetched: Raw entries fetched.
        parsed: Entries that parsed into documents.
        malformed: Entries rejected as malformed (ids listed in ``malformed_ids``).
        duplicates: Documents dropped as exact duplicates (same content hash).
        attempts: The delivery attempt that succeeded.
        skipped: Why the source was not fetched (empty when it was).
        malformed_ids: Ids (or positions) of the malformed entries.
    """

    source_id: str
    fetched: int = 0
    parsed: int = 0
    malformed: int = 0
    duplicates: int = 0
    attempts: int = 1
    skipped: str = ""
    malformed_ids: list[str] = msgspec.field(default_factory=list)


class ScrapeSource(Message, frozen=True, kw_only=True):
    """Task: fetch and parse one source.

    The task carries the source: its inline posts (a corpus from a file or the
    bundled one) or the URL of a live source. So a corpus is given in one
    place, the job, and any scraper replica can serve any source.

    Attributes:
        source_id: The source.
        kind: ``inline``, ``rss``, ``json`` or ``html``.
        posts: Raw entries of an inline source.
        url: Address of a live source.
        flaky_failures: Demonstration: the first this many attempts fail.
        down: Demonstration: every attempt fails.
    """

    type_name: ClassVar[str] = "tge.scrape"
    source_id: str
    kind: str = "inline"
    posts: list[Any] = msgspec.field(default_factory=list)
    url: str = ""
    flaky_failures: int = 0
    down: bool = False
    #: JSON sources: ``items`` (dotted path to the list) and ``fields`` (post field -> path).
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Fetch limits of the job (a ``[fetch]`` table), so every scraper replica applies them.
    fetch: dict[str, Any] = msgspec.field(default_factory=dict)


class ScrapeResult(Message, frozen=True, kw_only=True):
    """Result of :class:`ScrapeSource`: unique documents plus stats."""

    type_name: ClassVar[str] = "tge.scraped"
    stats: SourceStats
    documents: list[Document] = msgspec.field(default_factory=list)
    elapsed_ms: float = 0.0


class ScoreDocuments(Message, frozen=True, kw_only=True):
    """Task: score documents for TGE announcements."""

    type_name: ClassVar[str] = "tge.score"
    documents: list[Document]


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A document the detector judged a TGE announcement, with its fields.

    Attributes:
        doc_id: The document.
        source_id: Its source.
        score: The detector's raw score.
        confidence: The detector's confidence (0..1).
        project: Project name as written, or None.
        ticker: Upper-case ticker, or None.
        date: Event date, ISO (``--MM-DD`` when the year cannot be known), or None.
        evidence: The text span the verdict rests on.
        phrases: Launch cues that matched.
        content_hash: The document's content hash.
        url: The document's address, if known.
        simhash: The document's SimHash.
    """

    doc_id: str
    source_id: str
    score: float
    confidence: float = 0.0
    project: str | None = None
    ticker: str | None = None
    date: str | None = None
    evidence: str = ""
    phrases: list[str] = msgspec.field(default_factory=list)
    content_hash: str = ""
    url: str = ""
    simhash: int = 0


class ModelUse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the model layer did for a stage (absent when it is offline).

    Attributes:
        uncertain: Documents the rules were unsure of.
        sent: Documents sent to the model.
        decided: Documents the model decided.
        fallback: Why some uncertain documents kept the rules' verdict.
        usage: Calls, tokens, cost, fallbacks, budget refusals, refused tool calls.
    """

    uncertain: int = 0
    sent: int = 0
    decided: int = 0
    fallback: str = ""
    usage: Usage = msgspec.field(default_factory=Usage)

    def __add__(self, other: ModelUse) -> ModelUse:
        return ModelUse(
            uncertain=self.uncertain + other.uncertain, sent=self.sent + other.sent,
            decided=self.decided + other.decided, fallback=self.fallback or other.fallback,
            usage=self.usage + other.usage,
        )


class ScoreResult(Message, frozen=True, kw_only=True):
    """Result of :class:`ScoreDocuments`."""

    type_name: ClassVar[str] = "tge.scored"
    candidates: list[Candidate]
    scored: int
    dismissed: int
    elapsed_ms: float = 0.0
    model: ModelUse | None = None


class ValidateCandidates(Message, frozen=True, kw_only=True):
    """Task: validate, normalise and dedupe candidates from every source."""

    type_name: ClassVar[str] = "tge.validate"
    candidates: list[Candidate]
    #: Store the announcements in memory and mark the ones it already held.
    remember: bool = True


class Announcement(msgspec.Struct, frozen=True, kw_only=True):
    """A validated TGE announcement.

    Attributes:
        project: Project name (None only when just the ticker is known).
        ticker: Upper-case ticker, or None when no document gives one.
        date: Event date, ISO ``YYYY-MM-DD`` (``--MM-DD`` when no year can be
            known), or None when no document gives one.
        confidence: 0..1, higher with more agreeing sources and a surer detector.
        evidence: The strongest supporting text span.
        sources: Sources that reported it, sorted.
        doc_ids: Supporting documents, sorted.
        conflicting_dates: Other dates some sources gave.
        status: ``new``, or ``update`` when memory already held it.
        first_reported: When memory first held it (``update`` only).
    """

    project: str | None
    ticker: str | None
    date: str | None
    confidence: float
    evidence: str = ""
    sources: list[str] = msgspec.field(default_factory=list)
    doc_ids: list[str] = msgspec.field(default_factory=list)
    conflicting_dates: list[str] = msgspec.field(default_factory=list)
    status: str = "new"
    first_reported: str = ""

    @property
    def key(self) -> str:
        """Identity across runs: the ticker, else the normalised project name."""
        if self.ticker:
            return f"ticker:{self.ticker}"
        return "project:" + " ".join((self.project or "").lower().split())


class RejectedCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate the data-quality stage refused, and why."""

    doc_id: str
    source_id: str
    reason: str


class QualityReport(Message, frozen=True, kw_only=True):
    """Result of :class:`ValidateCandidates`."""

    type_name: ClassVar[str] = "tge.quality"
    announcements: list[Announcement]
    rejected: list[RejectedCandidate]
    duplicates: int
    elapsed_ms: float = 0.0


class CircuitState(enum.StrEnum):
    """Circuit-breaker states of a source."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CheckCircuit(Message, frozen=True, kw_only=True):
    """Task: may the caller fetch this source now?"""

    type_name: ClassVar[str] = "tge.circuit.check"
    source_id: str


class RecordFetch(Message, frozen=True, kw_only=True):
    """Task: record the outcome of one fetch attempt."""

    type_name: ClassVar[str] = "tge.circuit.record"
    source_id: str
    ok: bool
    error: str = ""
    latency_ms: float = 0.0


class CircuitStatus(Message, frozen=True, kw_only=True):
    """Result of :class:`CheckCircuit` and :class:`RecordFetch`."""

    type_name: ClassVar[str] = "tge.circuit.status"
    source_id: str
    state: CircuitState
    allowed: bool


class ReliabilityQuery(Message, frozen=True, kw_only=True):
    """Task: report per-source reliability."""

    type_name: ClassVar[str] = "tge.reliability.query"


class SourceReliability(msgspec.Struct, frozen=True, kw_only=True):
    """Fetch record of one source."""

    source_id: str
    successes: int
    failures: int
    success_rate: float
    state: CircuitState
    last_error: str = ""


class ReliabilityReport(Message, frozen=True, kw_only=True):
    """Result of :class:`ReliabilityQuery`, sources sorted by id."""

    type_name: ClassVar[str] = "tge.reliability"
    sources: list[SourceReliability]


class StageTiming(msgspec.Struct, frozen=True, kw_only=True):
    """How long one unit of work of a stage took."""

    stage: str
    elapsed_ms: float
    items: int = 0


class AnalyzeTimings(Message, frozen=True, kw_only=True):
    """Task: summarise stage timings."""

    type_name: ClassVar[str] = "tge.perf.analyze"
    timings: list[StageTiming]


class StageStats(msgspec.Struct, frozen=True, kw_only=True):
    """Timing summary of one stage (milliseconds)."""

    stage: str
    count: int
    items: int
    total_ms: float
    p50_ms: float
    p95_ms: float
    max_ms: float


class PerformanceReport(Message, frozen=True, kw_only=True):
    """Result of :class:`AnalyzeTimings`: stages in pipeline order and the bottleneck."""

    type_name: ClassVar[str] = "tge.perf"
    stages: list[StageStats]
    slowest_stage: str
    slowest_p95_ms: float
