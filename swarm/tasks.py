"""Ownership of background tasks: nothing in queenswarm is fire-and-forget.

A :class:`TaskSet` names each task it spawns, logs one that dies with an
error (and calls an optional ``on_crash`` hook so a supervisor can react),
and cancels and awaits all of them on :meth:`TaskSet.close`.

A long-running loop is started with :meth:`TaskSet.supervise` instead: a
loop that raises unexpectedly is logged, counted
(``swarm_background_task_restarts_total{task=...}``) and started again after
a backoff, so no bad message or bug in one turn silences a process for good.
A loop that keeps failing makes the set unhealthy (:attr:`TaskSet.healthy`),
which its owner reports (heartbeats, health checks).

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
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from swarm.metrics import BACKGROUND_RESTARTS

__all__ = ["TaskSet"]

#: Restarts in a row (each failing within ``_STEADY`` seconds of its start)
#: after which the set reports itself unhealthy.
UNHEALTHY_AFTER = 3
# A run lasting this long counts as recovered: the backoff starts over.
_STEADY = 30.0
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 5.0

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
        # Supervised loops failing in a row now, by name.
        self._failing: dict[str, int] = {}

    @property
    def healthy(self) -> bool:
        """False while a supervised loop keeps failing (``UNHEALTHY_AFTER`` times in a row)."""
        return all(n < UNHEALTHY_AFTER for n in self._failing.values())

    @property
    def failing(self) -> dict[str, int]:
        """Supervised loops failing now, with their failures in a row."""
        return {name: n for name, n in self._failing.items() if n}

    def supervise(
        self,
        factory: Callable[[], Coroutine[Any, Any, None]],
        *,
        name: str,
        label: str | None = None,
    ) -> asyncio.Task[None]:
        """Run the loop ``factory()`` makes, starting it again whenever it raises.

        A loop that returns is done. One that raises (anything but
        cancellation) is logged, counted under ``label`` (default ``name``)
        and restarted after an exponential backoff (50 ms up to 5 s; a run
        of 30 s resets it).
        """
        return self.spawn(self._supervised(factory, name, label or name), name=name)

    async def _supervised(
        self, factory: Callable[[], Coroutine[Any, Any, None]], name: str, label: str
    ) -> None:
        failures = 0
        try:
            while True:
                started = time.monotonic()
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if time.monotonic() - started >= _STEADY:
                        failures = 0
                    failures += 1
                    self._set_failing(label, failures)
                    BACKGROUND_RESTARTS.labels(task=label).inc()
                    delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1))
                    _log.error(
                        "background loop failed; restarting",
                        task=f"{self.owner}:{name}",
                        error=repr(exc),
                        failures=failures,
                        retry_in=delay,
                        exc_info=exc,
                    )
                    await asyncio.sleep(delay)
                    # Healthy again once a restarted run outlives the backoff
                    # window; until then it still counts as failing.
                    self._recover_later(label, failures)
        finally:
            self._set_failing(label, 0)

    def _set_failing(self, label: str, n: int) -> None:
        if n:
            self._failing[label] = n
        else:
            self._failing.pop(label, None)

    def _recover_later(self, label: str, failures: int) -> None:
        loop = asyncio.get_running_loop()

        def recovered() -> None:
            if self._failing.get(label) == failures:
                self._set_failing(label, 0)

        loop.call_later(_STEADY, recovered)

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
