"""Keyword precision: the offline detector as a swarm stage.

Each :class:`~agents.messages.ScoreDocuments` task runs
:func:`agents.detect.detect` on every document (with its publication date,
which resolves dates without a year) and passes on the announcements as
:class:`~agents.messages.Candidate` values with project, ticker, date,
confidence and evidence. The detector is deterministic and needs no
network; see :mod:`agents.detect` for the rules.

With a model configured (``ctx.llm``), the documents the detector is unsure
of (:attr:`~agents.detect.Detection.uncertain`) are classified by Claude
(:class:`agents.classify.Classifier`); every other document, and every one the
model could not decide, keeps the detector's verdict. Offline the stage is
exactly the detector, and says so once.

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
import typing
from typing import Any, ClassVar

from agents.detect import detect
from agents.messages import Candidate, Document, ModelUse, ScoreDocuments, ScoreResult
from swarm.agent import Agent, handler
from swarm.agent.context import TaskContext

if typing.TYPE_CHECKING:
    from agents.classify import Classifier, Label

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
    """Runs the detector over documents and passes on the announcements; Claude decides
    the documents the detector is unsure of when a model is configured."""

    role: ClassVar[str] = "keyword_precision"

    def __init__(self, *args: Any, classifier: Classifier | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._classifier = classifier

    @handler
    async def score(self, msg: ScoreDocuments, ctx: TaskContext) -> ScoreResult:
        """Return the candidates among ``msg.documents``."""
        started = time.perf_counter()
        model: ModelUse | None = None
        llm = ctx.agent.llm
        if llm.available:
            candidates, model = await self._with_model(msg.documents, ctx)
        else:
            # Said once per process; counted per task. Nothing else changes offline.
            llm.fallback("keyword_precision.classify", llm.llm.offline_reason)
            candidates = [c for c in map(candidate, msg.documents) if c is not None]
        return ScoreResult(
            candidates=candidates, scored=len(msg.documents),
            dismissed=len(msg.documents) - len(candidates),
            elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3), model=model,
        )

    async def _with_model(
        self, docs: list[Document], ctx: TaskContext
    ) -> tuple[list[Candidate], ModelUse]:
        from agents.classify import Classifier

        if self._classifier is None:
            self._classifier = Classifier()
        llm = ctx.llm
        outcome = await self._classifier.classify(llm, docs)
        candidates = []
        for doc in docs:
            label = outcome.labels[doc.doc_id]
            c = _from_label(doc, label) if label.source == "model" else candidate(doc)
            if c is not None:
                candidates.append(c)
        use = ModelUse(uncertain=outcome.uncertain, sent=outcome.sent, decided=outcome.by_model,
                       fallback=outcome.fallback, usage=llm.usage(f"task:{llm.task}"))
        llm.llm.accountant.forget(f"task:{llm.task}")
        return candidates, use


def _from_label(doc: Document, label: Label) -> Candidate | None:
    """A candidate from the model's label (None when it is not an announcement)."""
    if not label.is_announcement:
        return None
    return Candidate(
        doc_id=doc.doc_id, source_id=doc.source_id, score=0.0, confidence=1.0,
        project=label.project, ticker=label.ticker, date=label.date, evidence=label.evidence,
        phrases=["model"], content_hash=doc.content_hash, url=doc.url, simhash=doc.simhash,
    )
