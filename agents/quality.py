"""Data quality: validates, normalises and merges candidates across sources.

Dates are normalised to ISO ``YYYY-MM-DD`` (``--MM-DD`` kept when no year can
be known; impossible dates dropped to None), tickers to upper case (2-12
characters, starting with a letter or a digit; an implausible one is dropped
to None), project names to single-spaced text. A candidate with neither
project nor ticker is rejected (``no_subject``). Exact re-posts (same content
hash) count once; the rest are grouped by ticker (or, without one, by
project name) into one :class:`~agents.messages.Announcement` whose date is
the one most sources agree on, with a confidence that grows with agreeing
sources and the detector's confidence and drops when sources disagree.

With a memory coordinator in the agent's context, every announcement is
stored as a finding in the ``research.tge`` namespace (content with its
documents and sources, the task and agent as provenance, tagged by its
identity), and one memory already held is reported as ``status="update"``
with the time it was first reported: a later run, or another Queen sharing
the memory, does not report it as new.

Example:
    >>> from agents.quality import normalise_date
    >>> normalise_date("March 14, 2025"), normalise_date("--03-14")
    ('2025-03-14', '--03-14')
    >>> normalise_date("2025-02-30") is None
    True
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter, defaultdict
from typing import ClassVar

import msgspec

from agents import neardup
from agents.messages import (
    Announcement,
    Candidate,
    QualityReport,
    RejectedCandidate,
    ValidateCandidates,
)
from memory.records import MemoryFilter
from swarm.agent import Agent, TaskContext, handler
from swarm.errors import SwarmError

__all__ = ["NAMESPACE", "DataQualityAgent", "confidence", "normalise_date", "normalise_ticker"]

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MDY = re.compile(r"^([A-Za-z]+)\.? (\d{1,2}),? (\d{4})$")
_DMY = re.compile(r"^(\d{1,2}) ([A-Za-z]+)\.? (\d{4})$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9]{1,11}$")
_PARTIAL = re.compile(r"^--(\d{2})-(\d{2})$")


def normalise_date(text: str | None) -> str | None:
    """ISO date for ``YYYY-MM-DD``, ``Month D, YYYY``, ``D Month YYYY`` or ``--MM-DD``."""
    text = " ".join((text or "").split())
    if m := _PARTIAL.match(text):
        try:
            dt.date(2024, int(m[1]), int(m[2]))  # a leap year: every real month-day
        except ValueError:
            return None
        return text
    if m := _ISO.match(text):
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    elif m := _MDY.match(text):
        y, mo, d = int(m[3]), _MONTHS.get(m[1][:3].lower(), 0), int(m[2])
    elif m := _DMY.match(text):
        y, mo, d = int(m[3]), _MONTHS.get(m[2][:3].lower(), 0), int(m[1])
    else:
        return None
    try:
        return dt.date(y, mo, d).isoformat()
    except ValueError:
        return None


def normalise_ticker(text: str | None) -> str | None:
    """Upper-case ticker without ``$``, or None if it is not a plausible ticker."""
    symbol = (text or "").strip().lstrip("$").upper()
    return symbol if _SYMBOL.match(symbol) and not symbol.isdigit() else None


def confidence(*, sources: int, best: float, conflicting: bool) -> float:
    """Confidence of an announcement, within [0.05, 0.99].

    ``best`` is the detector's highest confidence among the documents; each
    further agreeing source removes a share of the remaining doubt.

    Example:
        >>> confidence(sources=1, best=0.8, conflicting=False)
        0.8
        >>> confidence(sources=3, best=0.8, conflicting=False)
        0.93
    """
    doubt = (1.0 - best) * (0.6 ** (min(sources, 5) - 1))
    value = 1.0 - doubt
    if conflicting:
        value -= 0.15
    return round(min(0.99, max(0.05, value)), 2)


class DataQualityAgent(Agent):
    """Turns candidates from every source into validated, deduplicated announcements."""

    role: ClassVar[str] = "data_quality"

    @handler
    async def validate(self, msg: ValidateCandidates, ctx: TaskContext) -> QualityReport:
        """Validate, normalise and merge ``msg.candidates``; remember them (see the module)."""
        started = time.perf_counter()
        rejected: list[RejectedCandidate] = []
        seen_hashes: set[str] = set()
        kept_prints: list[tuple[int, str]] = []
        duplicates = 0
        groups: dict[str, list[tuple[Candidate, str | None, str | None]]] = defaultdict(list)
        by_project: dict[str, str] = {}
        for c in sorted(msg.candidates, key=lambda c: (c.source_id, c.doc_id)):
            if c.content_hash and c.content_hash in seen_hashes:
                duplicates += 1
                continue
            if c.content_hash:
                seen_hashes.add(c.content_hash)
            # A near-identical re-post from another source adds no evidence of its own.
            if c.simhash and any(
                src != c.source_id and neardup.distance(c.simhash, h) <= neardup.MAX_DISTANCE
                for h, src in kept_prints
            ):
                duplicates += 1
                continue
            if c.simhash:
                kept_prints.append((c.simhash, c.source_id))
            project = " ".join((c.project or "").split()) or None
            ticker = normalise_ticker(c.ticker)
            if project is None and ticker is None:
                rejected.append(
                    RejectedCandidate(doc_id=c.doc_id, source_id=c.source_id, reason="no_subject")
                )
                continue
            pkey = (project or "").lower()
            if ticker is not None and pkey:
                by_project.setdefault(pkey, ticker)
            groups[ticker or pkey].append((c, project, normalise_date(c.date)))
        # A project-only group joins the ticker group of the same project, when there is one.
        for pkey, ticker in by_project.items():
            if pkey in groups and pkey != ticker:
                groups[ticker] += groups.pop(pkey)
        announcements = [_merge(group) for _, group in sorted(groups.items())]
        if ctx.memory is not None and msg.remember:
            announcements = [await _remember(ctx, a) for a in announcements]
        return QualityReport(
            announcements=announcements, rejected=rejected, duplicates=duplicates,
            elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )


def _merge(group: list[tuple[Candidate, str | None, str | None]]) -> Announcement:
    date_sources: dict[str, set[str]] = defaultdict(set)
    date_conf: defaultdict[str, float] = defaultdict(float)
    full = {d[4:]: d for _, _, d in group if d is not None and not d.startswith("--")}
    for c, _, date in group:
        if date is not None:
            # "--09-26" from a text with no year agrees with "2024-09-26" from another.
            date = full.get(date[1:], date) if date.startswith("--") else date
            date_sources[date].add(c.source_id)
            date_conf[date] += c.confidence
    # Most agreeing sources wins, then surer documents, then a full date, then the earlier.
    best_date = min(
        date_sources,
        key=lambda d: (-len(date_sources[d]), -date_conf[d], d.startswith("--"), d),
        default=None,
    )
    projects = Counter(project for _, project, _ in group if project)
    project = min(projects, key=lambda p: (-projects[p], p)) if projects else None
    tickers = Counter(normalise_ticker(c.ticker) for c, _, _ in group if c.ticker)
    ticker = min(tickers, key=lambda t: (-tickers[t], t or "")) if tickers else None
    sources = sorted({c.source_id for c, _, _ in group})
    conflicts = sorted(d for d in date_sources if d != best_date)
    strongest = max(group, key=lambda g: g[0].confidence)[0]
    return Announcement(
        project=project, ticker=ticker, date=best_date,
        confidence=confidence(
            sources=len(sources), best=strongest.confidence, conflicting=bool(conflicts),
        ),
        evidence=strongest.evidence, sources=sources,
        doc_ids=sorted(c.doc_id for c, _, _ in group), conflicting_dates=conflicts,
    )


#: Memory namespace of the pipeline's findings.
NAMESPACE = "research.tge"


def _tag(a: Announcement) -> str:
    key = a.key.lower()
    return "tge-" + "".join(ch if ch.isalnum() or ch in "_.:-" else "-" for ch in key)[:56]


async def _remember(ctx: TaskContext, a: Announcement) -> Announcement:
    """Mark ``a`` an update when memory already holds it; store it either way.

    The memory carries its provenance: the documents and sources, the task and
    the agent that learnt it. A memory failure never fails the validation.
    """
    memory = ctx.memory
    tag = _tag(a)
    try:
        hits = await memory.recall(
            a.project or a.ticker or "", k=1,
            filters=MemoryFilter(namespaces=(NAMESPACE,), tags=(tag,)),
        )
    except SwarmError as exc:
        ctx.log.warning("memory recall failed", error=str(exc))
        hits = []
    if hits:
        first = hits[0].memory
        a = msgspec.structs.replace(
            a, status="update",
            first_reported=dt.datetime.fromtimestamp(first.created_at, dt.UTC).isoformat(
                timespec="seconds"
            ),
        )
    content = (
        f"TGE announcement: {a.project or '?'} ({a.ticker or 'no ticker'}), event date "
        f"{a.date or 'unknown'}. Evidence: {a.evidence[:400]} Documents: "
        f"{', '.join(a.doc_ids[:20])}. Sources: {', '.join(a.sources[:20])}."
    )
    try:
        await memory.store(
            namespace=NAMESPACE, content=content, author=ctx.agent.agent_id,
            task_id=ctx.task_id, tags=(tag, "tge", a.status),
            confidence=a.confidence,
        )
    except SwarmError as exc:
        ctx.log.warning("memory store failed", error=str(exc))
    return a
