"""POST /v1/chat over the service's HTTP API (stub and offline), GET /v1/llm/usage,
and Claude's memory synthesis with citations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from memory.records import Memory
from memory.synthesis import ExtractiveSummarizer, LlmSummarizer
from swarm.llm import Budget, Llm, LlmSettings
from swarm.service import SwarmService
from swarm.settings import SwarmSettings
from tests.anthropic_stub import AnthropicStub

FINDINGS = [
    ("research.tge", "Aurora Network (AUR) token generation event is set for 2025-03-14."),
    ("research.tge", "Kelp Finance lists KELP on 2025-03-20 after its token launch."),
    ("research.ops", "The cryptowire source failed twice with HTTP 503 before recovering."),
]


async def _events(url: str, question: str) -> list[tuple[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{url}/v1/chat", json={"question": question}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    events = []
    for chunk in raw.strip().split("\n\n"):
        name = re.search(r"^event: (.*)$", chunk, re.M)
        data = re.search(r"^data: (.*)$", chunk, re.M)
        assert name and data, chunk
        events.append((name.group(1), json.loads(data.group(1))))
    return events


async def _service(llm: LlmSettings) -> SwarmService:
    service = SwarmService(SwarmSettings(http="127.0.0.1:0", llm=llm))
    await service.start()
    for namespace, content in FINDINGS:
        await service.memory.store(namespace=namespace, content=content, tags=["tge"])
    return service


def _cite_responder(body: dict[str, Any]) -> list[dict[str, Any]]:
    docs = [b for b in body["messages"][-1]["content"] if b["type"] == "document"]
    aur = next(d for d in docs if "AUR" in d["source"]["data"])
    n = aur["title"].split("]")[0].lstrip("[")
    return [{"type": "text", "text": f"The AUR TGE is on 2025-03-14 [{n}]."}]


async def test_chat_streams_a_cited_answer_over_the_stub(stub: AnthropicStub) -> None:
    stub.responder = _cite_responder
    stub.stream_chunk = 5
    service = await _service(LlmSettings(api_key=stub.api_key, base_url=stub.url,
                                         rpm=None, itpm=None, otpm=None))
    try:
        events = await _events(service.url, "When is the Aurora AUR token generation event?")
        async with aiohttp.ClientSession() as http, http.get(
                f"{service.url}/v1/llm/usage") as resp:
            usage = await resp.json()
    finally:
        await service.close()
    names = [e for e, _ in events]
    assert names[0] == "sources" and names[-1] == "done" and names.count("delta") > 2
    sources = events[0][1]
    assert {s["kind"] for s in sources} == {"memory"} and len(sources) >= 2
    text = "".join(d["text"] for e, d in events if e == "delta")
    done = events[-1][1]
    assert done["mode"] == "model" and text.startswith("The AUR TGE is on 2025-03-14 [")
    cited = done["citations"]
    assert len(cited) == 1 and "AUR" in next(s for s in sources if s["n"] == cited[0]["n"])[
        "snippet"]
    request = stub.ok()[-1]
    assert request.stream and all(b["type"] in ("document", "text")
                                  for b in request.request["messages"][0]["content"])
    assert usage["mode"] == "online" and usage["usage"]["role:chat"]["calls"] == 1


async def test_chat_offline_answers_extractively_with_citations() -> None:
    service = await _service(LlmSettings(api_key=None))
    try:
        events = await _events(service.url, "When is the Aurora AUR token generation event?")
        empty = await _events(service.url, "zebra quasar xylophone")
    finally:
        await service.close()
    done = events[-1][1]
    text = "".join(d["text"] for e, d in events if e == "delta")
    assert done["mode"] == "extractive" and "2025-03-14" in text
    first = done["citations"][0]
    assert first["kind"] == "memory" and re.search(rf"\[{first['n']}\]", text)
    assert "nothing on this" in "".join(d["text"] for e, d in empty if e == "delta")


async def test_chat_rejects_bad_input(stub: AnthropicStub) -> None:
    service = await _service(LlmSettings(api_key=None))
    try:
        async with aiohttp.ClientSession() as http:
            for body in ({"question": ""}, {"q": "x"}, {"question": "x" * 3000}):
                async with http.post(f"{service.url}/v1/chat", json=body) as resp:
                    assert resp.status == 400, body
                    assert resp.content_type == "application/problem+json"
    finally:
        await service.close()


async def test_synthesis_cites_the_memories_it_used(
    stub: AnthropicStub, make_llm: Callable[..., Llm]
) -> None:
    memories = [Memory(id=f"m{i}", namespace="research.tge", content=c)
                for i, (_, c) in enumerate(FINDINGS[:2])]
    said = "AUR launches 2025-03-14 [1] and KELP lists 2025-03-20 [2][7]."
    stub.responder = lambda body: [{"type": "text", "text": said}]
    summarizer = LlmSummarizer(make_llm().scope(role="memory"))
    text = await summarizer.summarize("research.tge#tge", memories)
    assert text == ("research.tge#tge (2 findings): AUR launches 2025-03-14 [m:m0] and KELP "
                    "lists 2025-03-20 [m:m1].")
    # Over budget, the extractive summary takes over.
    broke = make_llm(budgets=(Budget("role:memory", "usd", 0.0, "day"),), job="synth")
    fallback = await LlmSummarizer(broke.scope(role="memory")).summarize(
        "research.tge#tge", memories)
    assert fallback == await ExtractiveSummarizer().summarize("research.tge#tge", memories)
    assert broke.accountant.get("role:memory").budget_exceeded == 1
