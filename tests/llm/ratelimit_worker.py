"""One agent process of the shared rate-limit test and bench.

Runs an embedded swarm whose ``asker`` agent calls Claude through ``ctx.llm``;
the model layer's limiter is the Redis one, shared with the other processes.
Prints ``ready``, waits for the go signal on a Redis list, keeps the agent busy
for ``--duration`` seconds, then prints a JSON summary.

Usage: ``python -m tests.llm.ratelimit_worker --stub URL --redis URL --period S
--rpm N --itpm N --duration S --go KEY --seed N``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from swarm import Agent, InProcessRuntime, Message, Swarm, TaskContext, handler
from swarm.llm import Llm, LlmError, LlmSettings, Rates, RedisRateLimiter, document
from swarm.logging import configure_logging

WORDS = ("token launch airdrop listing exchange network protocol governance validator "
         "staking rewards community treasury roadmap mainnet testnet bridge wallet").split()


class Ask(Message):
    text: str


class Asker(Agent):
    role = "asker"

    @handler
    async def ask(self, msg: Ask, ctx: TaskContext) -> str:
        try:
            reply = await ctx.llm.create(
                [{"role": "user", "content": [document(msg.text, title="post")]}],
                system="Say whether the document announces a token launch.", max_tokens=16,
                untrusted=True,
            )
        except LlmError as exc:
            return f"error:{type(exc).__name__}"
        return "ok" if reply.text else "empty"


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    for name in ("--stub", "--redis", "--go"):
        p.add_argument(name, required=True)
    for name in ("--period", "--duration"):
        p.add_argument(name, type=float, required=True)
    for name in ("--rpm", "--itpm", "--seed"):
        p.add_argument(name, type=int, required=True)
    p.add_argument("--inflight", type=int, default=8)
    args = p.parse_args(argv)
    configure_logging(level="error")
    rng = random.Random(args.seed)
    settings = LlmSettings(api_key="sk-ant-test", base_url=args.stub, rpm=args.rpm,
                           itpm=args.itpm, otpm=None, period=args.period, max_retries=2)
    redis = aioredis.Redis.from_url(args.redis)
    # A handler may wait a whole period for capacity: the lease must outlast that.
    runtime = InProcessRuntime(visibility_timeout=args.period * 3 + 30)
    runtime.llm = Llm(settings, limiter=RedisRateLimiter(redis, Rates.of(settings)))  # type: ignore[attr-defined]
    outcomes: dict[str, int] = {}
    async with Swarm(agents=[Asker(concurrency=args.inflight)], runtime=runtime) as swarm:
        print("ready", flush=True)
        await redis.blpop([args.go], timeout=120)
        deadline = time.monotonic() + args.duration

        async def loop() -> None:
            while time.monotonic() < deadline:
                words = rng.randint(60, 400)
                text = " ".join(rng.choice(WORDS) for _ in range(words))
                handle = await swarm.submit(Ask(text=text))
                result: Any = await handle.result(timeout=args.duration + 60)
                outcomes[result] = outcomes.get(result, 0) + 1

        await asyncio.gather(*(loop() for _ in range(args.inflight)))
    await runtime.llm.close()  # type: ignore[attr-defined]
    await redis.aclose()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
