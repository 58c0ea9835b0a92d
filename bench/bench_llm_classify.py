"""Tokens and cost of keyword_precision's Claude classification per 1 000 documents.

Usage: ``python -m bench.bench_llm_classify``

Against the Messages API stub (real SDK; the stub counts tokens as words and
punctuation and caches prefixes of >= 1 024 tokens, as Sonnet does). The
documents are the tgedata helper's real excerpts and the bundled corpus,
cycled to 1 000. Three runs in the same process: the Messages API with the
cached prefix, the same without ``cache_control`` (the baseline), and the
Message Batches API with the cached prefix (half price).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agents.classify import Classifier
from swarm.llm import Llm, LlmSettings
from tests.anthropic_stub import AnthropicStub
from tests.llm import tge_model

N = 1000


async def one(label: str, *, cache: bool, batch: bool) -> dict[str, Any]:
    async with AnthropicStub(min_cache_tokens=1024) as stub:
        stub.responder = tge_model.responder
        llm = Llm(LlmSettings(api_key=stub.api_key, base_url=stub.url, rpm=None, itpm=None,
                              otpm=None, prompt_cache=cache))
        scope = llm.scope(role="keyword_precision")
        docs = tge_model.documents(N)
        classifier = Classifier()
        started = time.perf_counter()
        sent = decided = 0
        for i in range(0, N, 50):
            task = scope.for_task(f"t{i}")
            if batch:
                out = await classifier.classify_batch(task, docs[i:i + 50], poll=0.01)
            else:
                out = await classifier.classify(task, docs[i:i + 50])
            sent += out.sent
            decided += out.by_model
        elapsed = time.perf_counter() - started
        await llm.close()
        seen = [s for s in stub.seen if s.path in ("/v1/messages", "batch") and s.status == 200]
        rest = seen[1:]
        read = sum(s.cache_read_input_tokens for s in rest)
        total_in = sum(s.input_tokens + s.cache_creation_input_tokens + s.cache_read_input_tokens
                       for s in rest)
        u = scope.usage()
        return {"run": label, "sent": sent, "decided": decided, "calls": u.calls,
                "input": u.input_tokens, "cache_write": u.cache_write_tokens,
                "cache_read": u.cache_read_tokens, "output": u.output_tokens,
                "cost": u.cost_usd, "cached_share": read / total_in if total_in else 0.0,
                "elapsed": elapsed}


async def main() -> None:
    rows = [await one("messages, cached prefix", cache=True, batch=False),
            await one("messages, no cache_control (baseline)", cache=False, batch=False),
            await one("message batches, cached prefix", cache=True, batch=True)]
    print(f"{N} documents, claude-sonnet-4-5 list prices; per 1 000 documents:")
    print("| run | docs to model | calls | input | cache write | cache read | output | "
          "cached share of input after 1st request | cost USD |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['sent']} ({r['sent'] / N:.1%}) | {r['calls']} | {r['input']} | "
              f"{r['cache_write']} | {r['cache_read']} | {r['output']} | "
              f"{r['cached_share']:.1%} | {r['cost']:.4f} |")
    base = rows[1]["cost"]
    print(f"cached prefix: {rows[0]['cost'] / base:.0%} of the baseline's cost; "
          f"batches: {rows[2]['cost'] / base:.0%}")


if __name__ == "__main__":
    asyncio.run(main())
