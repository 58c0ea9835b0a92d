"""Data quality: validates, normalises and dedupes candidates across sources.

Dates are normalised to ISO ``YYYY-MM-DD`` (impossible dates are rejected),
symbols to upper case (2-8 characters, starting with a letter), project names
to single-spaced text (a missing project is rejected). Exact re-posts (same
content hash) count once; the rest are grouped by symbol into one
:class:`~agents.messages.Announcement` whose date is the one most sources
agree on, with a confidence that grows with agreeing sources and wording
strength and drops when sources disagree.

Example:
    >>> from agents.quality import normalise_date
    >>> normalise_date("March 14, 2025"), normalise_date("14 Mar 2025")
    ('2025-03-14', '2025-03-14')
    >>> normalise_date("2025-02-30") is None
    True
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter, defaultdict
from typing import ClassVar

from agents.messages import (
    Announcement,
    Candidate,
    QualityReport,
    RejectedCandidate,
    ValidateCandidates,
)
from swarm.agent import Agent, handler

__all__ = ["DataQualityAgent", "confidence", "normalise_date", "normalise_symbol"]

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_MDY = re.compile(r"^([A-Za-z]+)\.? (\d{1,2}),? (\d{4})$")
_DMY = re.compile(r"^(\d{1,2}) ([A-Za-z]+)\.? (\d{4})$")
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")


def normalise_date(text: str) -> str | None:
    """ISO date for ``YYYY-MM-DD``, ``Month D, YYYY`` or ``D Month YYYY``; None if invalid."""
    text = " ".join(text.split())
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


def normalise_symbol(text: str) -> str | None:
    """Upper-case symbol without ``$``, or None if it is not a plausible ticker."""
    symbol = text.strip().lstrip("$").upper()
    return symbol if _SYMBOL.match(symbol) else None


def confidence(*, sources: int, best_score: float, conflicting: bool) -> float:
    """Confidence of an announcement, within [0.05, 0.99].

    Example:
        >>> confidence(sources=1, best_score=7.5, conflicting=False)
        0.75
    """
    value = 0.5 + 0.1 * min(sources, 4) + 0.02 * min(best_score, 10.0)
    if conflicting:
        value -= 0.15
    return round(min(0.99, max(0.05, value)), 2)


class DataQualityAgent(Agent):
    """Turns candidates from every source into validated, deduplicated announcements."""

    role: ClassVar[str] = "data_quality"

    @handler
    async def validate(self, msg: ValidateCandidates) -> QualityReport:
        """Validate, normalise and merge ``msg.candidates``."""
        started = time.perf_counter()
        rejected: list[RejectedCandidate] = []
        seen_hashes: set[str] = set()
        duplicates = 0
        groups: dict[str, list[tuple[Candidate, str, str]]] = defaultdict(list)
        for c in sorted(msg.candidates, key=lambda c: (c.source_id, c.doc_id)):
            if c.content_hash and c.content_hash in seen_hashes:
                duplicates += 1
                continue
            if c.content_hash:
                seen_hashes.add(c.content_hash)
            reason = None
            project = " ".join(c.project.split())
            date = normalise_date(c.date_text)
            symbol = normalise_symbol(c.symbol)
            if date is None:
                reason = "invalid_date"
            elif symbol is None:
                reason = "invalid_symbol"
            elif not project:
                reason = "missing_project"
            if reason is not None or symbol is None or date is None:
                rejected.append(
                    RejectedCandidate(doc_id=c.doc_id, source_id=c.source_id, reason=reason or "")
                )
                continue
            groups[symbol].append((c, project, date))
        announcements = [_merge(symbol, group) for symbol, group in sorted(groups.items())]
        return QualityReport(
            announcements=announcements, rejected=rejected, duplicates=duplicates,
            elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )


def _merge(symbol: str, group: list[tuple[Candidate, str, str]]) -> Announcement:
    date_sources: dict[str, set[str]] = defaultdict(set)
    date_score: defaultdict[str, float] = defaultdict(float)
    for c, _, date in group:
        date_sources[date].add(c.source_id)
        date_score[date] += c.score
    # Most agreeing sources wins, then stronger wording, then the earlier date.
    best_date = min(date_sources, key=lambda d: (-len(date_sources[d]), -date_score[d], d))
    projects = Counter(project for _, project, _ in group)
    project = min(projects, key=lambda p: (-projects[p], p))
    sources = sorted({c.source_id for c, _, _ in group})
    conflicts = sorted(d for d in date_sources if d != best_date)
    return Announcement(
        project=project, symbol=symbol, date=best_date,
        confidence=confidence(
            sources=len(sources), best_score=max(c.score for c, _, _ in group),
            conflicting=bool(conflicts),
        ),
        sources=sources, doc_ids=sorted(c.doc_id for c, _, _ in group),
        conflicting_dates=conflicts,
    )
