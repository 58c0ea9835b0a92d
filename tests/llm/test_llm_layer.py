"""The model layer over the real SDK against the Messages API stub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from swarm.errors import ConfigError
from swarm.llm import (
    BatchItem,
    Llm,
    LlmOutputInvalid,
    LlmOverloaded,
    LlmRequestRejected,
    LlmSettings,
    LlmUnavailable,
    RateLimited,
    Tool,
    document,
)
from tests.anthropic_stub import AnthropicStub

SYSTEM = "You classify crypto news. " * 80  # above the stub's 256-token cache minimum


class Verdict(msgspec.Struct):
    is_announcement: bool
    ticker: str
    confidence: float


async def test_structured_output_is_validated_against_the_type(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    stub.responder = lambda body: [{"type": "tool_use", "id": "toolu_1", "name": "record_result",
                                    "input": {"is_announcement": True, "ticker": "AUR",
                                              "confidence": 0.9}}]
    scope = make_llm().scope(role="keyword_precision", agent="kp-1", task="t-1")
    verdict, reply = await scope.structured(
        Verdict, [{"role": "user", "content": [document("Aurora TGE", title="p1")]}],
        system=SYSTEM)
    assert verdict == Verdict(True, "AUR", 0.9)
    sent = stub.ok()[-1].request
    assert sent["tool_choice"] == {"type": "tool", "name": "record_result"}
    assert sent["tools"][0]["input_schema"]["required"] == ["is_announcement", "ticker",
                                                             "confidence"]
    assert sent["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert reply.usage.calls == 1 and reply.usage.cost_usd > 0
    assert scope.usage("task:t-1").calls == 1 and scope.usage("role:keyword_precision").calls == 1

    stub.responder = lambda body: [{"type": "tool_use", "id": "toolu_2", "name": "record_result",
                                    "input": {"is_announcement": "yes"}}]
    with pytest.raises(LlmOutputInvalid, match="Verdict"):
        await scope.structured(Verdict, [{"role": "user", "content": "x"}], system=SYSTEM)


async def test_the_stable_prefix_is_read_from_the_cache(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    scope = make_llm().scope(role="r")
    for i in range(3):
        await scope.structured(Verdict, [{"role": "user", "content": f"doc {i}"}], system=SYSTEM)
    first, *rest = stub.ok()
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert all(s.cache_read_input_tokens == first.cache_creation_input_tokens for s in rest)
    usage = scope.usage()
    assert usage.cache_read_tokens == 2 * first.cache_creation_input_tokens
    assert usage.cache_write_tokens == first.cache_creation_input_tokens


async def test_tool_use_round_trip_and_streaming(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    lookup = Tool("recall", "Look up memories.", {"type": "object", "properties": {
        "query": {"type": "string"}}, "required": ["query"]})

    def respond(body: dict[str, Any]) -> list[dict[str, Any]]:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and last[0]["type"] == "tool_result":
            return [{"type": "text", "text": f"Found: {last[0]['content']}"}]
        return [{"type": "tool_use", "id": "toolu_9", "name": "recall", "input": {"query": "AUR"}}]

    stub.responder = respond
    scope = make_llm().scope(role="chat")
    first = await scope.create([{"role": "user", "content": "what about AUR?"}], tools=[lookup])
    assert [c.name for c in first.tool_calls] == ["recall"] and first.stop_reason == "tool_use"
    call = first.tool_calls[0]
    messages = [
        {"role": "user", "content": "what about AUR?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name,
                                           "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "TGE on 2025-03-14"}]},
    ]
    done: list[Any] = []
    chunks = [c async for c in scope.stream(messages, system="Answer briefly.", done=done)]
    assert len(chunks) > 1 and "".join(chunks) == "Found: TGE on 2025-03-14"
    assert stub.ok()[-1].stream and done[0].usage.output_tokens > 0


async def test_write_tools_are_not_offered_and_calls_outside_the_list_are_refused(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    forget = Tool("forget_memory", "Delete a memory.", {"type": "object", "properties": {}},
                  read_only=False)
    recall = Tool("recall", "Look up memories.", {"type": "object", "properties": {}})
    stub.responder = lambda body: [
        {"type": "tool_use", "id": "toolu_a", "name": "forget_memory", "input": {}},
        {"type": "tool_use", "id": "toolu_b", "name": "recall", "input": {}},
    ]
    scope = make_llm().scope(role="chat")
    reply = await scope.create([{"role": "user", "content": "hi"}], tools=[forget, recall])
    assert stub.ok()[-1].tools_offered == ("recall",)
    assert [c.name for c in reply.tool_calls] == ["recall"] and reply.refused == ["forget_memory"]
    assert scope.usage().refused_tool_calls == 1
    reply = await scope.create([{"role": "user", "content": "hi"}], tools=[forget, recall],
                               allow_write=True)
    assert stub.ok()[-1].tools_offered == ("forget_memory", "recall") and not reply.refused


async def test_sdk_retries_429_and_529_and_errors_are_translated(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    scope = make_llm(max_retries=2).scope(role="r")
    stub.faults = [(429, 0.2), (529, 0.0)]
    await scope.create([{"role": "user", "content": "hi"}])
    assert [(s.status, s.retry_count) for s in stub.seen] == [(429, 0), (529, 1), (200, 2)]
    assert stub.seen[1].at - stub.seen[0].answered_at >= 0.2

    stub.faults = [(429, 0.05)] * 3
    with pytest.raises(RateLimited) as caught:
        await scope.create([{"role": "user", "content": "hi"}])
    assert caught.value.retry_after == pytest.approx(0.05)
    stub.faults = [(529, 0.0)] * 3
    with pytest.raises(LlmOverloaded):
        await scope.create([{"role": "user", "content": "hi"}])
    stub.models = ("claude-sonnet-4-5",)
    with pytest.raises(LlmRequestRejected, match="404"):
        await scope.create([{"role": "user", "content": "hi"}], model="claude-haiku-4-5")
    with pytest.raises(ConfigError, match="no price"):
        await scope.create([{"role": "user", "content": "hi"}], model="claude-unknown")


async def test_message_batches(stub: AnthropicStub, make_llm: Callable[..., Llm]) -> None:
    stub.batch_delay = 0.2

    def respond(body: dict[str, Any]) -> list[dict[str, Any]]:
        text = body["messages"][0]["content"][0]["source"]["data"]
        return [{"type": "tool_use", "id": "toolu_1", "name": "record_result", "input": {
            "is_announcement": "TGE" in text, "ticker": "X", "confidence": 1.0}}]

    stub.responder = respond
    scope = make_llm().scope(role="keyword_precision")
    items = [BatchItem(f"d{i}", [{"role": "user", "content": [document(t)]}])
             for i, t in enumerate(["TGE on May 1", "weather", "TGE soon"])]
    out = await scope.batch(Verdict, items, system=SYSTEM, poll=0.05)
    assert {k: v.is_announcement for k, v in out.items()} == {"d0": True, "d1": False, "d2": True}
    assert scope.usage().calls == 3
    batch_price = scope.usage().cost_usd
    assert [s.path for s in stub.seen].count("batch") == 3 and batch_price > 0


async def test_offline_calls_raise_and_the_fallback_is_said_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    llm = Llm(LlmSettings(api_key=None))
    scope = llm.scope(role="keyword_precision")
    assert not scope.available and llm.offline_reason == "no ANTHROPIC_API_KEY"
    with pytest.raises(LlmUnavailable, match="offline"):
        await scope.create([{"role": "user", "content": "hi"}])
    assert not Llm(LlmSettings(api_key="k", mode="offline")).available
    site = f"test.once.{id(scope)}"  # said once per process: a site no other test used
    for _ in range(3):
        scope.fallback(site, "no ANTHROPIC_API_KEY")
    assert scope.usage().fallbacks == 3
    assert capsys.readouterr().out.count("llm_fallback") == 1


async def test_a_failing_limiter_fails_the_call_as_llm_error_and_frees_the_budget(
    stub: AnthropicStub,
) -> None:
    from swarm.errors import TransportError
    from swarm.llm import Budget, LlmError

    class DownLimiter:
        async def try_acquire(self, model: str, i: int, o: int) -> float:
            raise TransportError("rate limiter: Redis failed: connection refused")

        async def settle(self, model: str, i: int, o: int) -> None: ...

        async def pause(self, model: str, seconds: float) -> None: ...

    settings = LlmSettings(api_key=stub.api_key, base_url=stub.url,
                           budgets=(Budget("swarm", "usd", 1.0, "job"),))
    llm = Llm(settings, limiter=DownLimiter())
    with pytest.raises(LlmError, match="connection refused"):
        await llm.scope(role="r").create([{"role": "user", "content": "hi"}])
    assert await llm.budgets.spent("swarm", "usd", "job") == 0.0 and not stub.seen
    await llm.close()


async def test_a_batch_over_budget_is_not_sent_and_reserves_nothing(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    from swarm.llm import Budget, BudgetExceeded

    llm = make_llm(budgets=(Budget("swarm", "usd", 0.01, "job"),), job="batch-budget")
    items = [BatchItem(f"d{i}", [{"role": "user", "content": [document("TGE " * 50)]}])
             for i in range(20)]
    with pytest.raises(BudgetExceeded):
        await llm.scope(role="r").batch(Verdict, items, system=SYSTEM, max_tokens=200)
    assert await llm.budgets.spent("swarm", "usd", "job") == 0.0
    assert not [s for s in stub.seen if s.path == "/v1/messages/batches"]
