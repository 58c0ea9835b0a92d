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
from dataclasses import dataclass
from typing import Any, ClassVar

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


@dataclass(slots=True, kw_only=True)
class Breaker:
    """Circuit breaker and counters of one source."""

    failure_threshold: int
    cooldown: float
    state: CircuitState = CircuitState.CLOSED
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    opened_at: float = 0.0
    last_error: str = ""

    def allow(self, *, now: float) -> bool:
        """Whether a fetch may go ahead now (moves open to half-open after the cooldown)."""
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.cooldown:
            self.state = CircuitState.HALF_OPEN
        return self.state is not CircuitState.OPEN

    def record(self, ok: bool, *, now: float, error: str = "") -> None:
        """Count one fetch outcome and move the circuit accordingly."""
        if ok:
            self.successes += 1
            self.consecutive_failures = 0
            self.state = CircuitState.CLOSED
            return
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = error
        if (
            self.state is CircuitState.HALF_OPEN
            or self.consecutive_failures >= self.failure_threshold
        ):
            self.state = CircuitState.OPEN
            self.opened_at = now


class ApiReliabilityAgent(Agent):
    """Tracks fetch outcomes per source and owns their circuit breakers.

    Run one replica per swarm: the breakers are this instance's state.

    Args:
        failure_threshold: Consecutive failures that open a circuit.
        cooldown: Seconds an open circuit refuses fetches.
        clock: Monotonic clock (injectable for tests).
        **kwargs: Passed to :class:`~swarm.agent.Agent`.
    """

    role: ClassVar[str] = "api_reliability"

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.clock = clock
        self.breakers: dict[str, Breaker] = {}

    def _breaker(self, source_id: str) -> Breaker:
        b = self.breakers.get(source_id)
        if b is None:
            b = self.breakers[source_id] = Breaker(
                failure_threshold=self.failure_threshold, cooldown=self.cooldown
            )
        return b

    @handler
    async def check(self, msg: CheckCircuit) -> CircuitStatus:
        """May ``msg.source_id`` be fetched now?"""
        b = self._breaker(msg.source_id)
        allowed = b.allow(now=self.clock())
        return CircuitStatus(source_id=msg.source_id, state=b.state, allowed=allowed)

    @handler
    async def record(self, msg: RecordFetch) -> CircuitStatus:
        """Count one fetch outcome."""
        b = self._breaker(msg.source_id)
        b.record(msg.ok, now=self.clock(), error=msg.error)
        return CircuitStatus(
            source_id=msg.source_id, state=b.state, allowed=b.state is not CircuitState.OPEN
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
                for sid, b in sorted(self.breakers.items())
            ]
        )
