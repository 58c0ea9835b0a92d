"""Keyword precision: the offline detector as a swarm stage.

Each :class:`~agents.messages.ScoreDocuments` task runs
:func:`agents.detect.detect` on every document (with its publication date,
which resolves dates without a year) and passes on the announcements as
:class:`~agents.messages.Candidate` values with project, ticker, date,
confidence and evidence. The detector is deterministic and needs no
network; see :mod:`agents.detect` for the rules.

Example:
    >>> from agents.keywords import candidate
    >>> from agents.messages import Document
    >>> doc = Document(doc_id="d1", source_id="s", title="Binance Will List Lombard (BARD)",
    ...                body="Trading opens at 2025-09-18 14:00 (UTC).")
    >>> c = candidate(doc)
    >>> c.project, c.ticker, c.date
    ('Lombard', 'BARD', '2025-09-18')
"""

from __future__ import annotations

import time
from typing import ClassVar

from agents.detect import detect
from agents.messages import Candidate, Document, ScoreDocuments, ScoreResult
from swarm.agent import Agent, handler

__all__ = ["KeywordPrecisionAgent", "candidate"]


def candidate(doc: Document) -> Candidate | None:
    """The document as a candidate announcement, or None when it is not one."""
    d = detect(doc.title, doc.body, published=doc.published or None)
    if not d.is_announcement:
        return None
    return Candidate(
        doc_id=doc.doc_id, source_id=doc.source_id, score=d.score, confidence=d.confidence,
        project=d.project, ticker=d.ticker, date=d.date, evidence=d.evidence,
        phrases=list(d.cues), content_hash=doc.content_hash, url=doc.url,
        simhash=doc.simhash,
    )


class KeywordPrecisionAgent(Agent):
    """Runs the detector over documents and passes on the announcements."""

    role: ClassVar[str] = "keyword_precision"

    @handler
    async def score(self, msg: ScoreDocuments) -> ScoreResult:
        """Return the candidates among ``msg.documents``."""
        started = time.perf_counter()
        candidates = [c for c in map(candidate, msg.documents) if c is not None]
        return ScoreResult(
            candidates=candidates, scored=len(msg.documents),
            dismissed=len(msg.documents) - len(candidates),
            elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )
