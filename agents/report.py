"""Human-readable rendering of a :class:`~agents.job.JobReport`.

Example:
    >>> from agents.report import render_text
    >>> render_text.__name__
    'render_text'
"""

from __future__ import annotations

from agents.job import JobReport

__all__ = ["render_text"]


def render_text(report: JobReport) -> str:
    """The report as aligned plain text (what ``python -m swarm.queen`` prints)."""
    lines = [
        f"TGE announcements: {len(report.announcements)} found in {report.sources} sources "
        f"({report.documents} unique documents, {report.candidates} candidates)",
        f"  {'PROJECT':<24} {'TICKER':<8} {'DATE':<10}  {'CONF':>4}  {'STATUS':<6}  DOCUMENTS",
    ]
    for a in report.announcements:
        conflict = (
            f"  (also reported: {', '.join(a.conflicting_dates)})" if a.conflicting_dates else ""
        )
        docs = ", ".join(a.doc_ids[:3]) + (f" +{len(a.doc_ids) - 3}" if len(a.doc_ids) > 3 else "")
        lines.append(
            f"  {(a.project or '-')[:24]:<24} {a.ticker or '-':<8} {a.date or '-':<10}  "
            f"{a.confidence:>4.2f}  {a.status:<6}  {docs}{conflict}"
        )
    ev = report.evaluation
    if ev is not None:
        lines.append(
            f"Against {ev.labelled} labelled documents: precision {ev.precision:.3f} "
            f"recall {ev.recall:.3f} F1 {ev.f1:.3f} (tp={ev.tp} fp={ev.fp} fn={ev.fn}); "
            f"project {ev.project_accuracy:.3f} date {ev.date_accuracy:.3f} "
            f"project+date {ev.project_and_date_accuracy:.3f} of true positives"
        )
    fresh = len(report.announcements) - len(report.from_memory)
    lines.append(
        f"From memory: {len(report.from_memory)} already reported (updates), {fresh} new"
    )
    lines += [f"  {m}" for m in report.from_memory]
    if report.malformed_lines:
        lines.append(f"Malformed input lines skipped: {len(report.malformed_lines)}")
        lines += [f"  {m}" for m in report.malformed_lines]
    lines.append(f"Rejected candidates: {len(report.rejected)}")
    lines += [f"  {r.doc_id} ({r.source_id}): {r.reason}" for r in report.rejected]
    lines.append("Sources:")
    reliability = {r.source_id: r for r in report.reliability}
    stats = {s.source_id: s for s in report.source_stats}
    for sid in sorted(set(reliability) | set(stats)):
        s, r = stats.get(sid), reliability.get(sid)
        scraped = (
            f"skipped ({s.skipped})" if s and s.skipped
            else f"fetched={s.fetched} malformed={s.malformed} duplicates={s.duplicates} "
            f"attempt={s.attempts}" if s
            else "failed"
        )
        health = f"ok={r.successes} failed={r.failures} circuit={r.state.value}" if r else ""
        lines.append(f"  {sid:<18} {scraped:<52} {health}")
    lines.append(f"Stages (slowest by p95: {report.slowest_stage}):")
    for st in report.stages:
        lines.append(
            f"  {st.stage:<9} runs={st.count:<3} items={st.items:<4} total={st.total_ms:8.2f}ms "
            f"p50={st.p50_ms:7.2f}ms p95={st.p95_ms:7.2f}ms max={st.max_ms:7.2f}ms"
        )
    counts = " ".join(f"{state}={n}" for state, n in report.tasks.items())
    lines.append(f"Tasks: {counts}")
    lines.append(f"Retries: {report.retries}  Duplicates dropped: {report.duplicates}")
    lines.append(f"Dead letters: {len(report.dead_letters)}")
    lines += [f"  {d.task_id} {d.type}: {d.error}" for d in report.dead_letters]
    lines += [f"Error: {e}" for e in report.errors]
    if report.llm is not None:
        m, u = report.llm, report.llm.usage
        lines.append(
            f"Model: {m.uncertain} uncertain documents, {m.sent} sent, {m.decided} decided by "
            f"the model; {u.calls} calls, {u.input_tokens} input + {u.cache_write_tokens} "
            f"cache-write + {u.cache_read_tokens} cache-read + {u.output_tokens} output tokens, "
            f"${u.cost_usd:.4f}"
        )
        if u.fallbacks or m.fallback:
            lines.append(
                f"  fallback to the rules: {u.fallbacks} times ({m.fallback}); "
                f"budget refusals: {u.budget_exceeded}"
            )
        if u.refused_tool_calls:
            lines.append(f"  tool calls refused (outside the allow-list): {u.refused_tool_calls}")
    lines.append(f"Elapsed: {report.elapsed_s:.2f}s")
    lines.append(f"Result: {'OK' if report.ok else 'FAILED'}")
    return "\n".join(lines) + "\n"
