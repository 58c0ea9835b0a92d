"""Retry policy: how many attempts a task gets and how long to wait between them.

Example:
    >>> from swarm.retry import RetryPolicy
    >>> policy = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=2.0, jitter=0.0)
    >>> [policy.backoff(n) for n in (1, 2, 3)]
    [0.1, 0.2, 0.4]
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from swarm.constants import DEFAULT_MAX_ATTEMPTS

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by ``max_attempts``.

    Attributes:
        max_attempts: Deliveries before a task is dead-lettered (crash
            redeliveries count, so a task that kills its agent is bounded too).
        base_delay: Delay after the first failed attempt, in seconds.
        max_delay: Upper bound of any delay, in seconds.
        jitter: Fraction of the delay randomised (0 = none, 1 = "full jitter").
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = 0.05
    max_delay: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def backoff(self, attempt: int) -> float:
        """Delay before the attempt that follows failed attempt number ``attempt``."""
        delay = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        if self.jitter:
            # Jitter spreads retries of a burst of failures so they do not
            # hammer a recovering dependency in lockstep.
            delay -= delay * self.jitter * random.random()
        return float(delay)
