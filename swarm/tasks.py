"""Ownership of background tasks: nothing in queenswarm is fire-and-forget.

A :class:`TaskSet` names each task it spawns, logs one that dies with an
error (and calls an optional ``on_crash`` hook so a supervisor can react),
and cancels and awaits all of them on :meth:`TaskSet.close`.

Example:
    >>> import asyncio
    >>> from swarm.tasks import TaskSet
    >>> async def demo():
    ...     tasks = TaskSet("demo")
    ...     tasks.spawn(asyncio.sleep(3600), name="sleeper")
    ...     n = len(tasks)
    ...     await tasks.close()
    ...     return n, len(tasks)
    >>> asyncio.run(demo())
    (1, 0)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

__all__ = ["TaskSet"]

T = TypeVar("T")

_log = structlog.get_logger("swarm.tasks")


class TaskSet:
    """A set of owned background tasks.

    Args:
        owner: Name used in task names and log lines.
        on_crash: Called with the task and its exception when one dies with an error.
    """

    def __init__(
        self,
        owner: str,
        *,
        on_crash: Callable[[asyncio.Task[Any], BaseException], None] | None = None,
    ) -> None:
        self.owner = owner
        self.on_crash = on_crash
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Start ``coro`` as a task owned by this set."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            _log.error("background task crashed", task=task.get_name(), error=repr(exc))
            if self.on_crash is not None:
                self.on_crash(task, exc)

    async def close(self) -> None:
        """Cancel every task and wait for all of them to finish."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
