"""Live config: swarm settings under a KV prefix, applied without restart.

Keys (under ``swarm/config/`` by default), JSON values:

* ``runtime/retry_policy``: e.g. ``{"max_attempts": 5, "base_delay": 0.1, "jitter": 0.5}``
  (fields of :class:`~swarm.retry.RetryPolicy`; omitted ones keep defaults);
* ``agents/<role>/concurrency``: an integer >= 1.

A bad value is rejected and counted (``swarm_messages_rejected_total{reason="bad_config"}``),
logged, and the previous setting stays in force.

Note: lowering an agent's concurrency takes effect at once; with
:class:`~swarm.inprocess.InProcessRuntime`, raising it above the value it was
registered with queues the extra tasks on the agent rather than running them
in parallel (its worker count is fixed at registration).

Example:
    >>> import asyncio
    >>> from discovery import InMemoryRegistry, LiveConfig
    >>> async def demo():
    ...     reg = InMemoryRegistry()
    ...     await reg.put_config("swarm/config/runtime/retry_policy", b'{"max_attempts": 7}')
    ...     live = LiveConfig(registry=reg)
    ...     await live.start()
    ...     n = live.settings.retry_policy.max_attempts
    ...     await live.close()
    ...     return n
    >>> from structlog.testing import capture_logs  # keeps log lines out of the output
    >>> with capture_logs():
    ...     asyncio.run(demo())
    7
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from discovery.registry import Registry
from swarm.metrics import REJECTED
from swarm.retry import RetryPolicy
from swarm.tasks import TaskSet

__all__ = ["CONFIG_PREFIX", "LiveConfig", "LiveSettings"]

CONFIG_PREFIX = "swarm/config/"
_log = structlog.get_logger("discovery.live_config")


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveSettings:
    """Settings that may change while the swarm runs.

    Attributes:
        retry_policy: Retry policy (``None``: not configured, keep the runtime's).
        concurrency: Per role concurrency limit.
        version: Increases with every applied change.
    """

    retry_policy: RetryPolicy | None = None
    concurrency: dict[str, int] = field(default_factory=dict)
    version: int = 0


def _retry_policy(raw: bytes) -> RetryPolicy:
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("retry_policy must be a JSON object")
    names = {f.name for f in dataclasses.fields(RetryPolicy)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown retry_policy fields {sorted(unknown)}")
    return RetryPolicy(**data)


def _concurrency(raw: bytes) -> int:
    value = json.loads(raw)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError("concurrency must be an integer >= 1")
    return value


class LiveConfig:
    """Watches config keys and applies typed settings to a runtime and Queen.

    Args:
        registry: Where the keys live.
        prefix: Key prefix (default ``swarm/config/``).
        runtime: Its ``retry_policy`` and local agents' ``concurrency`` are updated.
        queen: Its intake's ``retry_policy`` is updated.
        on_change: Called with the new :class:`LiveSettings` after each change.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        prefix: str = CONFIG_PREFIX,
        runtime: Any = None,
        queen: Any = None,
        on_change: Callable[[LiveSettings], Awaitable[None] | None] | None = None,
    ) -> None:
        self.registry = registry
        self.prefix = prefix
        self.runtime = runtime
        self.queen = queen
        self.on_change = on_change
        self.settings = LiveSettings()
        self._changed = asyncio.Condition()
        self._first = asyncio.Event()
        self._tasks = TaskSet("live-config")
        self._bad: dict[str, bytes] = {}

    async def start(self, *, timeout: float | None = 10.0) -> None:
        """Start watching; returns once the current settings are applied."""
        self._tasks.supervise(self._run, name="watch")
        async with asyncio.timeout(timeout):
            await self._first.wait()

    async def close(self) -> None:
        """Stop watching."""
        await self._tasks.close()

    async def wait_for(self, predicate: Callable[[LiveSettings], bool], *, timeout: float) -> None:
        """Wait until ``predicate(settings)`` holds.

        Raises:
            TimeoutError: Not within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.settings))

    async def _run(self) -> None:
        async for values in self.registry.watch_config(self.prefix):
            new = self._parse(values)
            if new != dataclasses.replace(self.settings, version=new.version):
                self.settings = new
                await self._apply(new)
            self._first.set()
            async with self._changed:
                self._changed.notify_all()

    def _parse(self, values: dict[str, bytes]) -> LiveSettings:
        policy = self.settings.retry_policy
        concurrency = dict(self.settings.concurrency)
        seen_roles = set()
        for key, raw in values.items():
            rel = key[len(self.prefix):]
            if rel.startswith("agents/") and rel.endswith("/concurrency"):
                seen_roles.add(rel[len("agents/"):-len("/concurrency")])
            if self._bad.get(key) == raw:
                continue  # already rejected and counted; the previous value stays
            try:
                if rel == "runtime/retry_policy":
                    policy = _retry_policy(raw)
                elif rel.startswith("agents/") and rel.endswith("/concurrency"):
                    role = rel[len("agents/"):-len("/concurrency")]
                    concurrency[role] = _concurrency(raw)
            except (ValueError, TypeError) as exc:
                self._bad[key] = raw
                REJECTED.labels(reason="bad_config").inc()
                _log.warning("bad config value ignored", key=key, error=str(exc))
        if "runtime/retry_policy" not in {k[len(self.prefix):] for k in values}:
            policy = None
        concurrency = {r: n for r, n in concurrency.items() if r in seen_roles}
        return LiveSettings(
            retry_policy=policy, concurrency=concurrency, version=self.settings.version + 1
        )

    async def _apply(self, s: LiveSettings) -> None:
        if s.retry_policy is not None:
            if self.runtime is not None:
                try:
                    self.runtime.retry_policy = s.retry_policy
                except AttributeError:
                    _log.warning("runtime's retry_policy is read-only", runtime=type(self.runtime))
            if self.queen is not None:
                self.queen.intake.retry_policy = s.retry_policy
        if self.runtime is not None and hasattr(self.runtime, "agents"):
            for agent in self.runtime.agents():
                limit = s.concurrency.get(agent.role)
                if limit is not None and agent.concurrency != limit:
                    agent.concurrency = limit
        _log.info("live config applied", version=s.version,
                  retry_policy=s.retry_policy, concurrency=s.concurrency)
        if self.on_change is not None:
            result = self.on_change(s)
            if result is not None:
                await result
