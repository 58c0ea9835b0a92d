"""Broadcast over Redis pub/sub: publish rate, fan-out delivery rate and latency.

Usage::

    python bench/bench_broadcast.py [--redis URL] [--messages N] [--subscribers K]

Prints figures; it is a script, not a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from swarm.messages import Envelope, Kind, new_id
from swarm.redis import RedisBroadcaster, RedisClients, RedisSettings


async def run(url: str, messages: int, subscribers: int, inflight: int) -> None:
    publisher_clients = await RedisClients.connect(RedisSettings.from_dsn(url))
    subscriber_clients = await RedisClients.connect(RedisSettings.from_dsn(url))
    pub = RedisBroadcaster(clients=publisher_clients)
    sub = RedisBroadcaster(clients=subscriber_clients)
    await pub.start()
    await sub.start()
    channel = f"swarm-bench:{os.urandom(4).hex()}"
    latencies: list[float] = []
    remaining = messages * subscribers
    done = asyncio.Event()

    async def on_event(envelope: Envelope) -> None:
        nonlocal remaining
        latencies.append(time.time() - envelope.created_at)
        remaining -= 1
        if remaining == 0:
            done.set()

    for _ in range(subscribers):
        await sub.subscribe(channel, on_event)
    payload = pub.codec.encode_payload({"text": "x" * 120})
    semaphore = asyncio.Semaphore(inflight)

    async def send() -> None:
        async with semaphore:
            env = Envelope(
                id=new_id(), kind=Kind.EVENT, type="", sender="bench", payload=payload,
                created_at=time.time(),
            )  # fmt: skip
            await pub.publish(channel, env)

    size = len(
        pub.codec.encode(
            Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="bench", payload=payload)
        )
    )
    started = time.perf_counter()
    await asyncio.gather(*(send() for _ in range(messages)))
    published = time.perf_counter() - started
    await asyncio.wait_for(done.wait(), 60)
    delivered = time.perf_counter() - started
    latencies.sort()
    print(f"envelope size            {size} B")
    print(f"messages x subscribers   {messages} x {subscribers}")
    print(f"publish rate             {messages / published:,.0f} msg/s ({inflight} in flight)")
    print(f"delivery rate            {messages * subscribers / delivered:,.0f} callbacks/s")
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99)]
    print(
        f"latency p50 / p99 / max  {p50 * 1e3:.2f} / {p99 * 1e3:.2f} / {latencies[-1] * 1e3:.2f} ms"
    )

    # Sequential round trips: one message at a time.
    seq: list[float] = []
    for _ in range(500):
        remaining = subscribers
        done.clear()
        t0 = time.perf_counter()
        await pub.publish(
            channel,
            Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="b", created_at=time.time()),
        )
        await done.wait()
        seq.append(time.perf_counter() - t0)
    print(f"sequential publish->callback p50 {statistics.median(seq) * 1e6:.0f} us")
    await pub.stop()
    await sub.stop()
    await publisher_clients.close()
    await subscriber_clients.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--redis", default=os.environ.get("SWARM_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.redis, args.messages, args.subscribers, args.inflight))


if __name__ == "__main__":
    main()
