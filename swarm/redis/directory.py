"""The role directory of the Redis runtime: roles, their message types and live replicas.

Each role's message types sit in one hash (:func:`~swarm.constants.directory_key`);
each replica's heartbeat (state, load, node, time) in its role's replicas hash.
A replica without a fresh heartbeat counts as gone: routing skips it and the
reaper hands its pending entries on.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog
from redis.exceptions import RedisError

from swarm import constants as C
from swarm.codec import DECODE_FAILURES
from swarm.metrics import REJECTED
from swarm.redis.core import Core, Replica, check_cancelled
from swarm.runtime import ReplicaInfo, RoleInfo

__all__ = ["UNHEALTHY", "Directory", "ReplicaBeat"]

#: The state a heartbeat reports for the replicas of a process one of whose
#: background loops keeps failing.
UNHEALTHY = "unhealthy"

_log = structlog.get_logger("swarm.redis.directory")

_HEARTBEAT = 1.0
_STALE_AFTER = 5.0
#: Seconds without a heartbeat after which a replica is buried (its field and
#: its own stream deleted). Well past ``_STALE_AFTER``: an agent back from a
#: long pause must not find its stream gone.
BURY_AFTER = 30.0
#: TTL (ms) of a role's replicas hash and of each agent's own stream, renewed by
#: every heartbeat: the backstop when no live replica is left to bury a dead one.
KEEP_ALIVE_MS = int(BURY_AFTER * 3 * 1000)
_CACHE_FOR = 0.5
# Past _CACHE_FOR and up to this age the snapshot still routes while one
# background read refreshes it; older, a submit waits for a fresh read.
_SERVE_STALE_FOR = 2.0


class ReplicaBeat(msgspec.Struct, array_like=True):
    """One replica's heartbeat, as stored in its role's replicas hash."""

    state: str
    inflight: int
    capacity: int
    node: str
    at: float


class Directory:
    """Publishes local replicas' heartbeats and reads the directory (cached briefly for routing).

    Args:
        core: The runtime's shared state.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self._cache: dict[str, RoleInfo] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_failed_at = -_CACHE_FOR
        # Every role (and its types) any snapshot showed: a submit to a known
        # role queues durably even while the directory is lost and no agent
        # has re-announced it yet.
        self._known: dict[str, frozenset[str]] = {}

    def invalidate(self) -> None:
        """Forget the cached snapshot (a local replica came or went)."""
        self._cache = None

    async def advertise(self, role: str, types: set[str]) -> None:
        """Add ``types`` to the message types ``role`` handles."""
        redis = self._core.redis
        dkey = C.directory_key(self._core.prefix)
        known = await redis.hget(dkey, role)
        if known:
            types = types | set(known.decode().split())
        await redis.hset(dkey, role, " ".join(sorted(types)))

    async def withdraw(self, rep: Replica) -> None:
        """Remove a replica's heartbeat."""
        await self._core.redis.hdel(C.replicas_key(rep.role, self._core.prefix), rep.agent.agent_id)

    async def known_roles(self) -> set[str]:
        """Roles in the directory, plus those this node sent tasks to."""
        raw = await self._core.redis.hkeys(C.directory_key(self._core.prefix))
        return {r.decode() for r in raw} | self._core.roles_seen

    def cached(self) -> dict[str, RoleInfo] | None:
        """The cached snapshot if it is recent enough for routing, else None.

        A snapshot past its half second still routes for a while, as a
        read in the background refreshes it: a busy submitter's tasks then
        never wait for the directory (every half second a burst of them did).
        """
        cache = self._cache
        if cache is None:
            return None
        now = time.monotonic()
        age = now - self._at
        if age < _CACHE_FOR:
            return cache
        if age < _SERVE_STALE_FOR and self._core.batcher is not None:
            if (self._refreshing is None or self._refreshing.done()) and (
                now - self._refresh_failed_at >= _CACHE_FOR
            ):
                # (Not again at once after a failed one: one warning per half
                # second while Redis is down, not one per submit.)
                self._refreshing = self._core.tasks.spawn(self._refresh(), name="directory")
            return cache
        return None

    async def _refresh(self) -> None:
        try:
            await self.snapshot(fresh=False)
        except (RedisError, OSError) as exc:
            check_cancelled()
            # The next submit past the stale window reads it itself, and fails
            # as a submit does when Redis is down.
            self._refresh_failed_at = time.monotonic()
            _log.warning("directory refresh failed", error=repr(exc))

    async def snapshot(self, *, fresh: bool) -> dict[str, RoleInfo]:
        """The directory; unless ``fresh``, a copy up to half a second old will do."""
        if not fresh and self._cache is not None and time.monotonic() - self._at < _CACHE_FOR:
            return self._cache
        # One read in flight at a time: a burst of submits shares it.
        async with self._lock:
            if not fresh and self._cache is not None and time.monotonic() - self._at < _CACHE_FOR:
                return self._cache
            return await self._read()

    async def _read(self) -> dict[str, RoleInfo]:
        core = self._core
        now = time.monotonic()
        roles = await core.redis.hgetall(C.directory_key(core.prefix))
        names = sorted(r.decode() for r in roles)
        pipe = core.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(C.replicas_key(name, core.prefix))
        beats = await pipe.execute() if names else []
        wall = time.time()
        out: dict[str, RoleInfo] = {}
        for name, raw in zip(names, beats, strict=True):
            replicas = []
            for agent_id, blob in raw.items():
                try:
                    beat = msgspec.msgpack.decode(blob, type=ReplicaBeat)
                except DECODE_FAILURES:
                    REJECTED.labels(reason="malformed_heartbeat").inc()
                    continue
                if wall - beat.at > _STALE_AFTER:
                    continue
                replicas.append(
                    ReplicaInfo(
                        agent_id=agent_id.decode(),
                        state=beat.state,
                        inflight=beat.inflight,
                        capacity=beat.capacity,
                    )
                )
            local = {r.agent.agent_id: r for r in core.replicas.values() if r.role == name}
            replicas = [r for r in replicas if r.agent_id not in local]
            replicas += [
                ReplicaInfo(
                    agent_id=agent_id,
                    state=r.agent.state.value,
                    inflight=r.assigned,
                    capacity=r.agent.concurrency,
                )
                for agent_id, r in local.items()
            ]
            replicas.sort(key=lambda r: r.agent_id)
            out[name] = RoleInfo(
                role=name,
                types=frozenset(roles[name.encode()].decode().split()),
                replicas=tuple(replicas),
            )
        known = self._known
        for name, info in out.items():
            known[name] = info.types | known.get(name, frozenset())
        for name, types in known.items():
            if name not in out:
                out[name] = RoleInfo(role=name, types=types, replicas=())
        self._cache, self._at = out, now
        return out

    async def live_replicas(self, role: str) -> list[str]:
        """Agent ids of a role with a fresh heartbeat (plus our own)."""
        return (await self.replicas_of(role))[0]

    async def replicas_of(self, role: str) -> tuple[list[str], list[tuple[str, bytes]]]:
        """A role's live agent ids (plus our own), and the departed ones to bury.

        Departed: no heartbeat for :data:`BURY_AFTER` seconds, or a heartbeat
        that does not decode; each comes with the heartbeat as read, so the
        burial can tell whether it beat again since.
        """
        core = self._core
        raw = await core.redis.hgetall(C.replicas_key(role, core.prefix))
        wall = time.time()
        live = {r.agent.agent_id for r in core.replicas.values() if r.role == role}
        gone: list[tuple[str, bytes]] = []
        for agent_id, blob in raw.items():
            try:
                beat = msgspec.msgpack.decode(blob, type=ReplicaBeat)
            except DECODE_FAILURES:
                gone.append((agent_id.decode(), blob))
                continue
            if wall - beat.at <= _STALE_AFTER:
                live.add(agent_id.decode())
            elif wall - beat.at > BURY_AFTER:
                gone.append((agent_id.decode(), blob))
        return sorted(live), [g for g in gone if g[0] not in live]

    async def heartbeat(self) -> None:
        """Publish every local replica's heartbeat each second, until cancelled."""
        while True:
            await asyncio.sleep(_HEARTBEAT)
            try:
                await self.beat(list(self._core.replicas.values()))
            except (RedisError, OSError) as exc:
                check_cancelled()
                _log.warning("heartbeat failed", error=repr(exc))

    async def beat(self, reps: list[Replica]) -> None:
        """Publish the heartbeats of ``reps`` now."""
        if not reps:
            return
        core = self._core
        now = time.time()
        healthy = core.healthy()
        pipe = core.redis.pipeline(transaction=False)
        roles: dict[str, set[str]] = {}
        for rep in reps:
            roles.setdefault(rep.role, set()).update(rep.agent.capabilities)
            beat = ReplicaBeat(
                rep.agent.state.value if healthy else UNHEALTHY,
                rep.assigned,
                rep.agent.concurrency,
                core.node_id,
                now,
            )
            replicas = C.replicas_key(rep.role, core.prefix)
            pipe.hset(replicas, rep.agent.agent_id, msgspec.msgpack.encode(beat))
            pipe.pexpire(replicas, KEEP_ALIVE_MS)
            pipe.pexpire(C.agent_stream(rep.role, rep.agent.agent_id, core.prefix), KEEP_ALIVE_MS)
        # Re-announced with every beat (never overwriting): a directory lost
        # with the server's data (a restart without persistence) comes back.
        dkey = C.directory_key(core.prefix)
        for role, types in roles.items():
            pipe.hsetnx(dkey, role, " ".join(sorted(types)))
        await pipe.execute()
