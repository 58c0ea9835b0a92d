"""Acceptance: keyword_precision with Claude for the uncertain documents only.

Caching over 1 000 documents, a $0.05 budget, an injection page, and offline
equality, all over the real SDK against the stub.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec
import pytest

from agents import default_swarm
from agents.classify import Classifier
from agents.detect import detect
from agents.job import run_tge_job
from agents.keywords import KeywordPrecisionAgent
from agents.messages import Document
from agents.report import render_text
from swarm import InProcessRuntime, Swarm
from swarm.llm import Budget, Llm, LlmSettings
from tests.anthropic_stub import AnthropicStub
from tests.llm import tge_model


def _swarm(
    llm: Llm | None, *, classifier: Classifier | None = None, concurrency: int = 4
) -> Swarm:
    runtime = InProcessRuntime()
    if llm is not None:
        runtime.llm = llm  # type: ignore[attr-defined]
    agents = [a for a in default_swarm() if a.role != "keyword_precision"]
    agents.append(KeywordPrecisionAgent(concurrency=concurrency, classifier=classifier))
    return Swarm(agents=agents, runtime=runtime)


async def test_caching_and_prefilter_over_1000_documents(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    stub.min_cache_tokens = 1024  # Sonnet's minimum cacheable prompt
    stub.responder = tge_model.responder
    docs = tge_model.documents(1000)
    scope = make_llm().scope(role="keyword_precision")
    classifier = Classifier()
    sent = 0
    for i in range(0, len(docs), 50):  # as the job does: one scoring task per scraped batch
        out = await classifier.classify(scope.for_task(f"t{i}"), docs[i:i + 50])
        sent += out.sent
        assert out.by_model == out.sent == out.uncertain and not out.fallback
    assert 0 < sent <= 0.30 * len(docs)
    first, *rest = stub.ok()
    assert first.cache_creation_input_tokens >= 1024
    read = sum(s.cache_read_input_tokens for s in rest)
    total = sum(s.input_tokens + s.cache_creation_input_tokens + s.cache_read_input_tokens
                for s in rest)
    assert read / total >= 0.80, (read, total)
    usage = scope.usage()
    assert usage.calls == len(stub.ok()) and usage.cache_read_tokens == read + \
        first.cache_read_input_tokens


async def test_a_budget_stops_calls_at_the_budget_and_the_rules_take_over(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    stub.min_cache_tokens = 1024
    stub.responder = tge_model.responder
    llm = make_llm(budgets=(Budget("swarm", "usd", 0.05, "job"),), job="budget-test")
    # One model call at a time in the whole swarm, so "to the call" is exact.
    async with _swarm(llm, classifier=Classifier(concurrency=1), concurrency=1) as swarm:
        report = await run_tge_job(swarm, corpus=tge_model.real_corpus())
    assert report.llm is not None
    use = report.llm.usage
    price = llm.settings.price(llm.settings.model)
    spent = sum(
        (s.input_tokens * price.input + s.output_tokens * price.output
         + s.cache_creation_input_tokens * price.cache_write
         + s.cache_read_input_tokens * price.cache_read) / 1e6
        for s in stub.ok())
    # Calls stop at the budget, to the call: what the API billed stays within $0.05, and
    # the first refused call's worst case would have gone past it.
    assert use.calls == len(stub.ok()) > 0
    assert spent == pytest.approx(use.cost_usd) and spent <= 0.05
    assert await llm.budgets.spent("swarm", "usd", "job") == pytest.approx(spent)
    assert use.budget_exceeded >= 1 and report.llm.sent < report.llm.uncertain
    assert "BudgetExceeded" in report.llm.fallback and use.fallbacks >= 1
    # Calls run one at a time: a call is refused only when its worst case would go past what
    # is left; a later, smaller call may still fit. Nothing billed passes the budget.
    m = re.search(r"exceeded: ([\d.e-]+) of 0.05 usd used; this call's worst case of "
                  r"([\d.e-]+)", report.llm.fallback)
    assert m is not None, report.llm.fallback
    assert float(m[1]) <= spent + 1e-9 and float(m[1]) + float(m[2]) > 0.05
    print(f"budget $0.05: {use.calls} calls made, ${spent:.5f} billed, "
          f"{use.budget_exceeded} refused, {report.llm.sent}/{report.llm.uncertain} uncertain "
          "documents decided by the model")
    text = render_text(report)
    assert "fallback to the rules" in text and "budget refusals" in text


async def test_an_injection_page_makes_no_privileged_call_and_keeps_its_label(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    stub.responder = tge_model.responder
    base = next(d for d in tge_model.documents(400)
                if detect(d.title, d.body + " " + tge_model.INJECTION,
                          published=d.published).uncertain
                and detect(d.title, d.body, published=d.published).uncertain)
    poisoned = msgspec.structs.replace(base, body=base.body + " " + tge_model.INJECTION)
    scope = make_llm().scope(role="keyword_precision")
    clean = await Classifier().classify(scope, [base])
    dirty = await Classifier().classify(scope, [poisoned])
    assert clean.by_model == dirty.by_model == 1
    assert dirty.labels[base.doc_id].is_announcement == clean.labels[base.doc_id].is_announcement
    assert msgspec.structs.replace(dirty.labels[base.doc_id], evidence="") == \
        msgspec.structs.replace(clean.labels[base.doc_id], evidence="")
    request = stub.ok()[-1]
    # The model did try; the layer refused, counted it, and offered nothing privileged.
    assert request.tool_calls == ("forget_memory", "record_labels")
    assert request.tools_offered == ("record_labels",)
    assert scope.usage().refused_tool_calls == 1
    # The page reached the model only as a document block, never as instructions.
    blocks = request.request["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["document", "text"]
    assert "forget_memory" in blocks[0]["source"]["data"]
    assert "forget_memory" not in blocks[1]["text"]
    assert all(tge_model.INJECTION not in b["text"] for b in request.request["system"])


async def test_offline_is_exactly_the_rules(capsys: pytest.CaptureFixture[str]) -> None:
    async with _swarm(None) as swarm:
        plain = await run_tge_job(swarm, corpus=tge_model.real_corpus())
    offline = Llm(LlmSettings(api_key=None))
    async with _swarm(offline) as swarm:
        report = await run_tge_job(swarm, corpus=tge_model.real_corpus())
    strip = {"elapsed_s", "stages", "slowest_stage"}
    as_dict = lambda r: {k: v for k, v in msgspec.to_builtins(r).items() if k not in strip}  # noqa: E731
    assert as_dict(report) == as_dict(plain) and report.llm is None
    assert plain.candidates > 0
    assert capsys.readouterr().out.count("llm_fallback") <= 1


def test_documents_helper_is_deterministic() -> None:
    a, b = tge_model.documents(30), tge_model.documents(30)
    assert [d.doc_id for d in a] == [d.doc_id for d in b] and isinstance(a[0], Document)
