"""A handle on a submitted task.

Example:
    >>> from swarm import InProcessRuntime
    >>> from swarm.queen.handle import TaskHandle
    >>> TaskHandle("t-1", InProcessRuntime())
    <TaskHandle t-1>
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

import msgspec

from swarm.ledger import TaskRecord
from swarm.runtime import Runtime, result_of

__all__ = ["TaskHandle"]


class TaskHandle(msgspec.Struct):
    """Returned by ``submit``: await :meth:`result` for the outcome.

    A msgspec Struct rather than a plain class because one is made per task:
    its constructor runs in C, about a thousand instructions less than a
    Python ``__init__``. Equality and hashing go by task id alone.

    Attributes:
        task_id: The id of the task in effect (for a reused idempotency key,
            the first task's id).
        runtime: The runtime that runs the task.
    """

    task_id: str
    runtime: Runtime

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.task_id == self.task_id

    def __hash__(self) -> int:
        return hash(self.task_id)

    def result(self, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
        """Wait for the task and return its decoded result.

        Returns a coroutine to await (``await handle.result()``). A runtime
        with a ``wait_result`` coroutine (the in-process one) serves it in one
        coroutine; any other goes through ``Runtime.wait``.

        Raises:
            TaskFailed, TaskDeadLettered, TaskExpired: It ended without a result.
            SwarmTimeout: It did not finish within ``timeout`` (it keeps running).
        """
        wait_result = getattr(self.runtime, "wait_result", None)
        if wait_result is not None:
            return wait_result(self.task_id, timeout)  # type: ignore[no-any-return]
        return self._result(timeout)

    async def _result(self, timeout: float | None) -> Any:
        record = await self.runtime.wait(self.task_id, timeout=timeout)
        return result_of(self.runtime.codec, record)

    async def status(self) -> TaskRecord | None:
        """The task's current ledger record."""
        return await self.runtime.ledger.get(self.task_id)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()
