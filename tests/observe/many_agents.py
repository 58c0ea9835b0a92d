"""``python -m tests.observe.many_agents PREFIX ROLES PER_ROLE``: a process of held agents.

Registers PER_ROLE agents of each of ROLES roles (``obs_hold_<i>``) whose
handlers wait until the process gets SIGTERM; prints ``ready`` once all run.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from redis.asyncio import Redis

from swarm.redis.runtime import RedisRuntime
from tests.observe.agents import HoldAgent


async def main(url: str, prefix: str, roles: int, per_role: int) -> None:
    gate = asyncio.Event()
    HoldAgent.gate = gate
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, gate.set)
    # Each agent's reader holds a blocking connection: more than redis-py's default pool.
    redis = Redis.from_url(url, max_connections=1000)
    runtime = RedisRuntime(redis=redis, prefix=prefix, block_time=0.5)
    await runtime.start()
    for i in range(roles):
        cls = type(f"ObsHold{i}", (HoldAgent,), {"role": f"obs_hold_{i}"})
        for _ in range(per_role):
            await runtime.register(cls(concurrency=1))
    print("ready", flush=True)
    await gate.wait()
    await runtime.stop(drain=False)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
