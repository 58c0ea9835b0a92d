"""API reliability: per-source success/failure counts and a circuit breaker.

Scrapers ask :class:`~agents.messages.CheckCircuit` before fetching and report
every attempt with :class:`~agents.messages.RecordFetch`. After
``failure_threshold`` consecutive failures a source's circuit opens: fetches
are refused until ``cooldown`` seconds passed, then one trial is let through
(half-open); its success closes the circuit, its failure opens it again.

Example:
    >>> from agents.reliability import Breaker
    >>> b = Breaker(failure_threshold=2, cooldown=60.0)
    >>> b.record(False, now=0.0); b.record(False, now=1.0)
    >>> b.state.value, b.allow(now=2.0), b.allow(now=62.0), b.state.value
    ('open', False, True, 'half_open')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from agents.breakers import Breaker, BreakerStore, LocalBreakers, RedisBreakers
from agents.messages import (
    CheckCircuit,
    CircuitState,
    CircuitStatus,
    RecordFetch,
    ReliabilityQuery,
    ReliabilityReport,
    SourceReliability,
)
from swarm.agent import Agent, handler

__all__ = ["ApiReliabilityAgent", "Breaker"]


class ApiReliabilityAgent(Agent):
    """Tracks fetch outcomes per source and owns their circuit breakers.

    The breakers must be one per swarm: when no ``store`` is given, the agent
    keeps them where its context's ``shared_state`` says (on the Redis runtime,
    :class:`~agents.breakers.RedisBreakers`, shared by every replica of the role
    in any process), else in this process (:class:`~agents.breakers.LocalBreakers`).

    Args:
        failure_threshold: Consecutive failures that open a circuit.
        cooldown: Seconds an open circuit refuses fetches.
        clock: Clock (injectable for tests); wall-clock time, since a shared
            store compares the times of replicas in other processes.
        store: Where the breaker state lives (default: the swarm's shared state,
            else this process).
        **kwargs: Passed to :class:`~swarm.agent.Agent`.
    """

    role: ClassVar[str] = "api_reliability"

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.time,
        store: BreakerStore | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store: BreakerStore = store or LocalBreakers(
            failure_threshold=failure_threshold, cooldown=cooldown
        )
        self._store_given = store is not None
        self._limits = (failure_threshold, cooldown)
        self.clock = clock

    async def on_start(self) -> None:
        shared = self.context.shared_state
        if not self._store_given and shared is not None:
            # A replica's own breakers would split one host's circuit between replicas.
            threshold, cooldown = self._limits
            self.store = RedisBreakers(
                shared.redis, prefix=shared.prefix, failure_threshold=threshold,
                cooldown=cooldown,
            )

    @property
    def breakers(self) -> dict[str, Breaker]:
        """This replica's breakers (with :class:`~agents.breakers.LocalBreakers`)."""
        return self.store.records if isinstance(self.store, LocalBreakers) else {}

    @handler
    async def check(self, msg: CheckCircuit) -> CircuitStatus:
        """May ``msg.source_id`` be fetched now?"""
        state, allowed = await self.store.allow(msg.source_id, now=self.clock())
        return CircuitStatus(source_id=msg.source_id, state=state, allowed=allowed)

    @handler
    async def record(self, msg: RecordFetch) -> CircuitStatus:
        """Count one fetch outcome."""
        state = await self.store.record(
            msg.source_id, ok=msg.ok, now=self.clock(), error=msg.error
        )
        return CircuitStatus(
            source_id=msg.source_id, state=state, allowed=state is not CircuitState.OPEN
        )

    @handler
    async def report(self, msg: ReliabilityQuery) -> ReliabilityReport:
        """Per-source reliability, sorted by source id."""
        return ReliabilityReport(
            sources=[
                SourceReliability(
                    source_id=sid, successes=b.successes, failures=b.failures,
                    success_rate=round(b.successes / max(1, b.successes + b.failures), 3),
                    state=b.state, last_error=b.last_error,
                )
                for sid, b in sorted((await self.store.snapshot()).items())
            ]
        )
