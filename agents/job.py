"""The bundled job: find TGE announcements in the corpus with the stock swarm.

The job drives the five specialists through the Queen over one corpus (the
bundled real excerpts, or :func:`agents.corpus.load_input` of your file),
given here and only here: one scrape task per source (retried on failure;
the reliability role opens a source's circuit after repeated failures), one
scoring task per scraped source as soon as it arrives, one validation task
over every candidate, then the reliability and performance reports. It
returns a :class:`JobReport`; when documents carry labels, it scores the
run against them (:class:`Evaluation`).

Example:
    >>> import asyncio, structlog
    >>> from agents import default_swarm
    >>> from agents.job import run_tge_job
    >>> from swarm import Swarm
    >>> from swarm.logging import configure_logging
    >>> configure_logging(level="error")
    >>> async def demo():
    ...     async with Swarm(agents=default_swarm()) as swarm:
    ...         return await run_tge_job(swarm)
    >>> report = asyncio.run(demo())
    >>> report.ok, report.evaluation.labelled >= 200
    (True, True)
    >>> structlog.reset_defaults()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from agents.corpus import Corpus, SourceSpec, load_corpus
from agents.detect.evaluate import same_date, same_project
from agents.messages import (
    AnalyzeTimings,
    Announcement,
    Candidate,
    CheckCircuit,
    ModelUse,
    PerformanceReport,
    QualityReport,
    RecordFetch,
    RejectedCandidate,
    ReliabilityQuery,
    ReliabilityReport,
    ScoreDocuments,
    ScoreResult,
    ScrapeResult,
    ScrapeSource,
    SourceReliability,
    SourceStats,
    StageStats,
    StageTiming,
    ValidateCandidates,
)
from swarm.errors import NoRouteError, SwarmError
from swarm.ledger import TaskState
from swarm.queen.handle import TaskHandle
from swarm.swarm import Swarm

__all__ = ["DeadLetterInfo", "Evaluation", "JobReport", "Progress", "run_tge_job"]

#: Called as ``progress(stage, done, total, detail)`` while the job runs.
Progress = Callable[[str, int, int, str], None]

#: Attempts per scrape task: enough for a flaky source, and for the circuit to open.
_SCRAPE_ATTEMPTS = 4


class DeadLetterInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A dead-lettered task, as reported."""

    task_id: str
    type: str
    error: str


class Evaluation(msgspec.Struct, frozen=True, kw_only=True):
    """The run scored against the labels of its documents (document level).

    A labelled document counts as found when an announcement cites it; field
    accuracies are shares of the true positives whose own extraction got the
    field right (see :mod:`agents.detect.evaluate` for the matching rules).
    """

    labelled: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    project_accuracy: float
    ticker_accuracy: float
    date_accuracy: float
    project_and_date_accuracy: float


class JobReport(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of one run of the TGE job.

    Attributes:
        ok: Every task ended ``done`` and no stage failed.
        sources: Sources in the corpus.
        documents: Unique documents scraped.
        candidates: Documents the keyword stage passed on.
        announcements: Validated announcements, sorted by date then symbol.
        rejected: Candidates the data-quality stage refused.
        duplicates: Exact re-posts dropped (scraper and data quality).
        source_stats: Scrape statistics per source.
        reliability: Fetch reliability per source.
        stages: Timing statistics per stage.
        slowest_stage: The stage with the highest p95.
        tasks: Tasks by final ledger state (every task of the run, internal ones included).
        retries: Extra attempts the job's tasks needed.
        dead_letters: Tasks in the dead-letter queue.
        errors: Stage failures (task errors), if any.
        elapsed_s: Wall time of the job.
        malformed_lines: Input lines skipped as malformed (``line N: reason``).
        evaluation: Precision, recall and field accuracy against the labels,
            when the corpus has labelled documents.
        from_memory: Announcements memory already held (reported as updates),
            as ``key (first reported TIME)``.
        llm: What the model layer did (documents sent, tokens, cost, fallbacks and why);
            None when it is offline.
    """

    ok: bool
    sources: int
    documents: int
    candidates: int
    announcements: list[Announcement]
    rejected: list[RejectedCandidate]
    duplicates: int
    source_stats: list[SourceStats]
    reliability: list[SourceReliability]
    stages: list[StageStats]
    slowest_stage: str
    tasks: dict[str, int]
    retries: int
    dead_letters: list[DeadLetterInfo]
    errors: list[str]
    elapsed_s: float
    malformed_lines: list[str] = msgspec.field(default_factory=list)
    evaluation: Evaluation | None = None
    from_memory: list[str] = msgspec.field(default_factory=list)
    llm: ModelUse | None = None


#: Every task type the job submits (directly or from a handler).
_REQUIRED = (
    ScrapeSource, ScoreDocuments, ValidateCandidates, ReliabilityQuery, AnalyzeTimings,
    CheckCircuit, RecordFetch,
)


async def _check_routes(swarm: Swarm) -> None:
    handled = {t for info in (await swarm.runtime.directory()).values() for t in info.types}
    missing = sorted(m.type_name for m in _REQUIRED if m.type_name not in handled)
    if missing:
        raise NoRouteError(
            f"the TGE job needs the stock agents (agents:default_swarm); no agent handles "
            f"{', '.join(missing)}"
        )


def _no_progress(stage: str, done: int, total: int, detail: str) -> None:
    pass


async def run_tge_job(
    swarm: Swarm,
    *,
    corpus: Corpus | None = None,
    progress: Progress | None = None,
    task_timeout: float = 60.0,
) -> JobReport:
    """Run the TGE pipeline on a started swarm that has the stock roles.

    Args:
        swarm: A running swarm (``async with Swarm(...)``).
        corpus: Sources to scrape (default: the bundled corpus of real excerpts).
        progress: Progress callback.
        task_timeout: Seconds to wait for any one task.

    Raises:
        NoRouteError: No agent of the swarm handles one of the job's task types.
    """
    started = time.perf_counter()
    await _check_routes(swarm)
    # The ledger and the dead-letter queue hold every job's tasks (the agents'
    # own sends included): this job's are what changed while it ran.
    counts_before = await swarm.queen.counts()
    began_at = time.time()
    corpus = corpus or load_corpus()
    notify = progress or _no_progress
    handles: list[TaskHandle] = []
    errors: list[str] = []
    scraped: list[ScrapeResult] = []
    scored: list[ScoreResult] = []
    total = len(corpus.sources)

    async def one_source(spec: SourceSpec) -> None:
        source_id = spec.id
        task = ScrapeSource(
            source_id=spec.id, kind=spec.kind, posts=list(spec.posts), url=spec.url,
            flaky_failures=spec.flaky_failures, down=spec.down, options=spec.options,
            fetch=corpus.fetch,
        )
        try:
            h = await swarm.submit(task, max_attempts=_SCRAPE_ATTEMPTS)
            handles.append(h)
            result: ScrapeResult = await h.result(timeout=task_timeout)
        except SwarmError as exc:
            errors.append(f"scrape {source_id}: {exc}")
            notify("scrape", len(scraped) + len(errors), total, f"{source_id} failed")
            return
        scraped.append(result)
        st = result.stats
        detail = (
            f"{source_id} skipped ({st.skipped})" if st.skipped
            else f"{source_id}: {len(result.documents)} docs, attempt {st.attempts}"
        )
        notify("scrape", len(scraped) + len(errors), total, detail)
        if not result.documents:
            return
        try:
            h = await swarm.submit(ScoreDocuments(documents=result.documents))
            handles.append(h)
            s: ScoreResult = await h.result(timeout=task_timeout)
        except SwarmError as exc:
            errors.append(f"score {source_id}: {exc}")
            return
        scored.append(s)
        notify("score", len(scored), total, f"{source_id}: {len(s.candidates)} candidates")

    async with asyncio.TaskGroup() as tg:
        for spec in corpus.sources:
            tg.create_task(one_source(spec))

    candidates: list[Candidate] = [c for s in scored for c in s.candidates]
    h = await swarm.submit(ValidateCandidates(candidates=candidates))
    handles.append(h)
    quality: QualityReport = await h.result(timeout=task_timeout)
    notify("validate", 1, 1, f"{len(quality.announcements)} announcements")

    timings = (
        [StageTiming(stage="scrape", elapsed_ms=r.elapsed_ms, items=len(r.documents))
         for r in scraped]
        + [StageTiming(stage="score", elapsed_ms=s.elapsed_ms, items=s.scored) for s in scored]
        + [StageTiming(stage="validate", elapsed_ms=quality.elapsed_ms, items=len(candidates))]
    )
    h_rel = await swarm.submit(ReliabilityQuery())
    h_perf = await swarm.submit(AnalyzeTimings(timings=timings))
    handles += [h_rel, h_perf]
    reliability: ReliabilityReport = await h_rel.result(timeout=task_timeout)
    perf: PerformanceReport = await h_perf.result(timeout=task_timeout)
    notify("report", 1, 1, f"slowest stage: {perf.slowest_stage}")

    retries = 0
    for handle in handles:
        rec = await handle.status()
        if rec is not None:
            retries += max(0, rec.attempts - 1)
    counts = await swarm.queen.counts()
    tasks = {
        state.value: max(0, counts.get(state, 0) - counts_before.get(state, 0))
        for state in TaskState
    }
    dead = [
        DeadLetterInfo(task_id=d.envelope.id, type=d.envelope.type, error=d.error)
        for d in await swarm.queen.dead_letters()
        if d.failed_at >= began_at
    ]
    not_done = sum(n for state, n in tasks.items() if state != TaskState.DONE.value)
    return JobReport(
        ok=not errors and not dead and not_done == 0,
        sources=total,
        documents=sum(len(r.documents) for r in scraped),
        candidates=len(candidates),
        announcements=sorted(quality.announcements, key=lambda a: (a.date or "~", a.key)),
        rejected=quality.rejected,
        duplicates=quality.duplicates + sum(r.stats.duplicates for r in scraped),
        source_stats=sorted((r.stats for r in scraped), key=lambda s: s.source_id),
        reliability=reliability.sources,
        stages=perf.stages,
        slowest_stage=perf.slowest_stage,
        tasks=tasks,
        retries=retries,
        dead_letters=dead,
        errors=sorted(errors),
        elapsed_s=round(time.perf_counter() - started, 3),
        malformed_lines=[str(m) for m in corpus.malformed],
        evaluation=_evaluate(corpus, quality.announcements, candidates),
        from_memory=[
            f"{a.key} (first reported {a.first_reported})"
            for a in quality.announcements if a.status == "update"
        ],
        llm=_model_use(scored),
    )


def _evaluate(
    corpus: Corpus, announcements: list[Announcement], candidates: list[Candidate]
) -> Evaluation | None:
    if not corpus.labels:
        return None
    found = {d for a in announcements for d in a.doc_ids}
    by_doc = {c.doc_id: c for c in candidates}
    tp = fp = fn = p_ok = t_ok = d_ok = both = 0
    for doc_id, label in corpus.labels.items():
        positive = bool(label.get("is_announcement"))
        if doc_id in found and positive:
            tp += 1
            c = by_doc[doc_id]
            p = same_project(c.project, label.get("project"))
            d = same_date(c.date, label)
            p_ok += p
            d_ok += d
            both += p and d
            t_ok += (c.ticker or None) == (label.get("ticker") or None)
        elif doc_id in found:
            fp += 1
        elif positive:
            fn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    def share(n: int) -> float:
        return round(n / tp, 3) if tp else 0.0

    return Evaluation(
        labelled=len(corpus.labels), tp=tp, fp=fp, fn=fn, precision=round(precision, 3),
        recall=round(recall, 3), f1=round(f1, 3), project_accuracy=share(p_ok),
        ticker_accuracy=share(t_ok), date_accuracy=share(d_ok),
        project_and_date_accuracy=share(both),
    )


def _model_use(scored: list[ScoreResult]) -> ModelUse | None:
    uses = [s.model for s in scored if s.model is not None]
    if not uses:
        return None
    total = uses[0]
    for use in uses[1:]:
        total = total + use
    return total
