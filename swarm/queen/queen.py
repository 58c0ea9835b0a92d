"""The Queen: intake, routing, ledger and commands composed over a runtime.

The Queen holds no delivery logic of its own; each part is usable alone.

Example:
    >>> import asyncio
    >>> from swarm import InProcessRuntime, Queen
    >>> async def demo():
    ...     runtime = InProcessRuntime()
    ...     await runtime.start()
    ...     queen = Queen(runtime=runtime)
    ...     counts = await queen.counts()
    ...     await runtime.stop()
    ...     return counts
    >>> asyncio.run(demo())
    {}
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from swarm.ledger import Ledger, TaskRecord, TaskState
from swarm.messages import Message, new_id
from swarm.queen.commands import CommandBus
from swarm.queen.handle import TaskHandle
from swarm.queen.intake import Intake
from swarm.retry import RetryPolicy
from swarm.routing import Router
from swarm.runtime import DeadLetter, Runtime

__all__ = ["Queen"]


class Queen:
    """The orchestrator.

    Args:
        runtime: The runtime tasks travel on.
        queen_id: This Queen's id (default: random).
        router: Routing policy (default: by type and free capacity).
        retry_policy: Default attempt bound for submitted tasks.
        max_attempts_by_type: Per type overrides of the attempt bound.

    Attributes:
        intake: Builds and submits tasks.
        router: Resolves recipients.
        commands: Broadcasts control commands.
        ledger: The runtime's task ledger.
    """

    def __init__(
        self,
        *,
        runtime: Runtime,
        queen_id: str | None = None,
        router: Router | None = None,
        retry_policy: RetryPolicy | None = None,
        max_attempts_by_type: Mapping[str, int] | None = None,
    ) -> None:
        self.runtime = runtime
        self.queen_id = queen_id or f"queen-{new_id()[-8:]}"
        self.router = router or Router()
        self.intake = Intake(
            runtime=runtime,
            sender=self.queen_id,
            router=self.router,
            retry_policy=retry_policy,
            max_attempts_by_type=max_attempts_by_type,
        )
        self.commands = CommandBus(runtime=runtime, sender=self.queen_id)

    def set_dispatch(
        self, *, router: Router | None = None, epoch: Callable[[], int] | None = None
    ) -> None:
        """Route through ``router`` and stamp tasks with ``epoch()`` from now on.

        For what the Queen learns after it was built (a health-aware router,
        the elector of its leadership): ``epoch`` returning 0 means "not
        leading", and the intake then dispatches nothing.
        """
        if router is not None:
            self.router = router
            self.intake.router = router
        if epoch is not None:
            self.intake.epoch = epoch

    @property
    def ledger(self) -> Ledger:
        """The task ledger."""
        return self.runtime.ledger

    def submit(
        self,
        message: Message,
        *,
        to: str = "",
        priority: int = 0,
        timeout: float | None = None,
        deadline: float | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Coroutine[Any, Any, TaskHandle]:
        """Submit a task; see :meth:`swarm.queen.intake.Intake.submit` for options.

        Returns the intake's coroutine to await (``await swarm.submit(...)``):
        not itself a coroutine, so a task costs one coroutine frame less.
        """
        # By position: cheaper than seven keywords, per task.
        return self.intake.submit(
            message, to, priority, timeout, deadline, idempotency_key, max_attempts
        )

    async def status(self, task_id: str) -> TaskRecord | None:
        """A task's ledger record."""
        return await self.ledger.get(task_id)

    async def counts(self) -> dict[TaskState, int]:
        """How many tasks are in each state."""
        return await self.ledger.counts()

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Dead-lettered tasks."""
        return await self.runtime.dead_letters(limit=limit)

    async def redrive(self, task_id: str) -> bool:
        """Re-queue a dead-lettered task with a fresh attempt budget."""
        return await self.runtime.redrive(task_id)
