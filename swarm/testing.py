"""Helpers for testing your own agents, in-process and fast.

Example:
    >>> import asyncio
    >>> from swarm import Agent, Message, handler
    >>> from swarm.testing import run_task
    >>> class Shout(Message):
    ...     text: str
    >>> class Shouter(Agent):
    ...     @handler
    ...     async def shout(self, msg: Shout) -> str:
    ...         return msg.text.upper()
    >>> asyncio.run(run_task(Shouter(), Shout(text="bzz")))
    'BZZ'
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from swarm.inprocess import InProcessRuntime
from swarm.messages import Envelope, Message
from swarm.retry import RetryPolicy
from swarm.swarm import Swarm

if TYPE_CHECKING:
    from swarm.agent.base import Agent

__all__ = ["FAST_RETRY", "EventRecorder", "run_task", "test_swarm"]

#: Retry policy for tests: three attempts, millisecond backoff, no jitter.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, jitter=0.0)


async def run_task(agent: Agent, message: Message, *, timeout: float = 10.0) -> Any:
    """Run one task through ``agent`` on a private in-process runtime and return its result.

    Raises:
        TaskFailed, TaskDeadLettered: The handler failed.
    """
    async with Swarm(agents=[agent], retry_policy=FAST_RETRY) as swarm:
        handle = await swarm.submit(message, to=f"agent:{agent.agent_id}")
        return await handle.result(timeout=timeout)


@contextlib.asynccontextmanager
async def test_swarm(
    agents: Iterable[Agent], *, retry_policy: RetryPolicy = FAST_RETRY, **runtime_options: Any
) -> AsyncIterator[Swarm]:
    """A swarm on a fresh in-process runtime with a fast retry policy.

    Leaving the block waits until every submitted task is final ("burst mode"),
    so assertions after it see settled ledger states.
    """
    runtime = InProcessRuntime(retry_policy=retry_policy, **runtime_options)
    swarm = Swarm(agents=agents, runtime=runtime, retry_policy=retry_policy)
    async with swarm:
        yield swarm
        await runtime.stop_when_idle(timeout=runtime_options.get("visibility_timeout", 30.0))


test_swarm.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


class EventRecorder:
    """Records every envelope published on some topics; wait for a count with :meth:`wait_for`.

    Example:
        >>> recorder = EventRecorder()
        >>> recorder.envelopes
        []
    """

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._changed = asyncio.Condition()

    async def attach(self, swarm: Swarm, *topics: str) -> None:
        """Subscribe to ``topics`` on the swarm's runtime."""
        for topic in topics:
            await swarm.runtime.subscribe(topic, self._record)

    async def _record(self, envelope: Envelope) -> None:
        async with self._changed:
            self.envelopes.append(envelope)
            self._changed.notify_all()

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[Envelope]:
        """Wait until at least ``count`` envelopes were recorded, and return them."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.envelopes) >= count)
        return list(self.envelopes)
