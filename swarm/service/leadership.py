"""Leadership of the Queens that share a swarm: who leads, and this Queen's part.

Several Queens may run against one Redis (and Consul); one leads and
dispatches, the others stand by. With Consul the Queens elect on a session
lock (and the Queen also routes by health); with only Redis, on a Redis
lease. The leader's epoch stamps every task; on Redis it also raises the
fence that refuses a deposed Queen's dispatches where they land. The winner
announces itself (Queen id, API URL, epoch), so that a standby can say who
leads instead of waiting silently.

An embedded swarm (no shared server) has one Queen: :class:`SoloLeadership`.

Example:
    >>> import asyncio
    >>> from swarm.service.leadership import SoloLeadership
    >>> solo = SoloLeadership(queen_id="q1", url="http://127.0.0.1:8080")
    >>> asyncio.run(solo.leader())
    LeaderInfo(queen_id='q1', url='http://127.0.0.1:8080', epoch=0)
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import msgspec
import structlog

from swarm.constants import leader_info_key
from swarm.errors import SwarmError, SwarmTimeout

__all__ = [
    "LEADERSHIP",
    "ElectedLeadership",
    "LeaderInfo",
    "Leadership",
    "SoloLeadership",
    "describe_leader",
    "wait_with_hints",
]

_log = structlog.get_logger("swarm.service.leadership")

#: Name of the Queens' leadership (its epoch fences their writes).
LEADERSHIP = "queen"
#: Registry key of the leader's announcement (outside the live-config prefix).
_REGISTRY_INFO_KEY = "swarm/leader/" + LEADERSHIP


class LeaderInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who leads.

    Attributes:
        queen_id: The leading Queen's id.
        url: Its HTTP API, when it serves one ("" otherwise).
        epoch: Its leadership epoch (0 for an embedded swarm's only Queen).
    """

    queen_id: str
    url: str = ""
    epoch: int = 0


class Leadership(Protocol):
    """What the service asks of leadership."""

    @property
    def leading(self) -> bool:
        """Whether this Queen leads now."""
        ...

    @property
    def epoch(self) -> int:
        """This Queen's epoch while it leads, else 0."""
        ...

    async def leader(self) -> LeaderInfo | None:
        """The last announced leader, if any."""
        ...

    async def wait_leading(self, *, timeout: float | None) -> None:
        """Wait until this Queen leads; raises :class:`SwarmTimeout` past ``timeout``."""
        ...


class SoloLeadership:
    """The only Queen of an embedded swarm: it always leads."""

    leading = True
    epoch = 0

    def __init__(self, *, queen_id: str, url: str = "") -> None:
        self._info = LeaderInfo(queen_id=queen_id, url=url)

    async def leader(self) -> LeaderInfo | None:
        return self._info

    async def wait_leading(self, *, timeout: float | None) -> None:
        return None


class ElectedLeadership:
    """Campaigns through a :class:`~discovery.election.LeaderElector`; announces a win.

    Args:
        elector: The elector (started and closed by its owner).
        queen_id: This Queen's id.
        url: This Queen's HTTP API URL, announced when it wins.
        registry: Where the announcement goes with Consul.
        redis: Where it goes with only Redis (a ``redis.asyncio`` client).
        prefix: Redis key prefix.
        say: Told "leading with epoch N" on each win (one line for people).
    """

    def __init__(
        self,
        *,
        elector: Any,
        queen_id: str,
        url: str = "",
        registry: Any = None,
        redis: Any = None,
        prefix: str = "swarm",
        say: Any = None,
    ) -> None:
        self.say = say
        self.elector = elector
        self.queen_id = queen_id
        self.url = url
        self.registry = registry
        self.redis = redis
        self.prefix = prefix

    @property
    def leading(self) -> bool:
        return bool(self.elector.leading)

    @property
    def epoch(self) -> int:
        return int(self.elector.epoch)

    async def announce(self, epoch: int) -> None:
        """Record that this Queen leads with ``epoch`` (called on election)."""
        data = msgspec.json.encode(LeaderInfo(queen_id=self.queen_id, url=self.url, epoch=epoch))
        try:
            if self.registry is not None:
                await self.registry.put_config(_REGISTRY_INFO_KEY, data)
            elif self.redis is not None:
                await self.redis.set(leader_info_key(LEADERSHIP, self.prefix), data)
        except SwarmError as exc:
            _log.warning("could not announce leadership", error=str(exc))
        _log.info("leading", queen_id=self.queen_id, epoch=epoch, url=self.url)
        if self.say is not None:
            self.say(f"leading with epoch {epoch}")

    async def leader(self) -> LeaderInfo | None:
        try:
            if self.registry is not None:
                raw = await self.registry.get_config(_REGISTRY_INFO_KEY)
            elif self.redis is not None:
                raw = await self.redis.get(leader_info_key(LEADERSHIP, self.prefix))
            else:
                raw = None
        except SwarmError as exc:
            _log.warning("could not read the leader's announcement", error=str(exc))
            return None
        if not raw:
            return None
        try:
            return msgspec.json.decode(raw, type=LeaderInfo)
        except msgspec.DecodeError:
            return None

    async def wait_leading(self, *, timeout: float | None) -> None:
        """Wait to lead, saying who leads meanwhile.

        Raises:
            SwarmTimeout: Still standing by after ``timeout`` seconds; the
                message names the leader and how to wait longer.
        """
        if self.leading:
            return
        started = time.monotonic()
        try:
            await self.elector.wait_leading(timeout=timeout)
        except TimeoutError:
            info = await self.leader()
            who = f"Queen {info.queen_id} leads (epoch {info.epoch})" if info else "another Queen"
            if info is not None and info.url:
                who += f", its API at {info.url}"
            raise SwarmTimeout(
                f"did not become leader within {time.monotonic() - started:.0f} s: {who}. "
                "Stop it, wait longer (--leader-timeout), or run this one with --serve as a "
                "standby that takes over when the leader stops"
            ) from None


async def describe_leader(leadership: Leadership) -> str:
    """One line for people: who leads."""
    info = await leadership.leader()
    if info is None:
        return "no leader announced yet"
    where = f" at {info.url}" if info.url else ""
    return f"Queen {info.queen_id} leads (epoch {info.epoch}){where}"


async def wait_with_hints(
    leadership: Leadership, say: Any, *, timeout: float | None, every: float = 10.0
) -> None:
    """:meth:`Leadership.wait_leading`, telling ``say`` who leads every ``every`` seconds."""
    if leadership.leading:
        return
    say(f"waiting for leadership: {await describe_leader(leadership)}")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = every if left is None else min(every, left)
        try:
            await leadership.wait_leading(timeout=step)
            return
        except SwarmTimeout:
            if left is not None and left <= step:
                raise
            say(f"still standing by: {await describe_leader(leadership)}")
