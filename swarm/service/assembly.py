"""``SwarmService``: a running swarm built from one :class:`~swarm.settings.SwarmSettings`.

The one assembly layer: both CLIs and library users build a swarm here. In
order, it opens the registry (Consul, or a process-local one), the runtime
(in-process, or Redis with fencing), the memory coordinator (PostgreSQL
durable tier with ``postgres_url``; Redis hot tier and memory-sync with
``redis_url``), the Queen and its agents, leadership (a Consul lock or a
Redis lease when the swarm is shared), live config, and the HTTP API
(``http``). Closing undoes it in reverse and drains.

Example:
    >>> import asyncio
    >>> from swarm import Agent, Message, handler
    >>> from swarm.service import SwarmService
    >>> from swarm.settings import SwarmSettings
    >>> class Add(Message):
    ...     a: int
    ...     b: int
    >>> class Adder(Agent):
    ...     @handler
    ...     async def add(self, msg: Add) -> int:
    ...         return msg.a + msg.b
    >>> async def demo():
    ...     async with SwarmService(SwarmSettings(), agents=[Adder()]) as service:
    ...         handle = await service.swarm.submit(Add(a=2, b=3))
    ...         return await handle.result(timeout=5), service.leadership.leading
    >>> asyncio.run(demo())
    (5, True)
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import structlog

from swarm.agent.base import Agent
from swarm.errors import ConfigError, SwarmError, SwarmTimeout
from swarm.inprocess import InProcessRuntime
from swarm.ledger import InMemoryLedger, TaskRecord
from swarm.messages import Message, lookup_message_type
from swarm.queen.queen import Queen
from swarm.runtime import QueueStats, RoleInfo, Runtime
from swarm.service.leadership import (
    LEADERSHIP,
    ElectedLeadership,
    Leadership,
    SoloLeadership,
    wait_with_hints,
)
from swarm.settings import SwarmSettings
from swarm.swarm import Swarm
from swarm.tasks import TaskSet

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["ROUTES_ENTRY_POINT_GROUP", "RouteInstaller", "SwarmService", "UntypedPayload"]

_log = structlog.get_logger("swarm.service")

_RECENT_MAX = 10_000
#: Entry-point group of route installers mounted on every service's HTTP app.
ROUTES_ENTRY_POINT_GROUP = "queenswarm.routes"
#: ``install(app, service)``: adds routes (a dashboard, SSE, chat...) to the API app.
RouteInstaller = Callable[["web.Application", "SwarmService"], None]


def _optional(module: str, names: tuple[str, ...], what: str) -> list[Any]:
    try:
        mod = importlib.import_module(module)
        return [getattr(mod, name) for name in names]
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{what} needs the {module!r} module, which this installation lacks: {exc}"
        ) from exc


class UntypedPayload(dict[str, Any]):
    """The fields of a message whose class this process lacks, under its wire name."""

    type_name = ""


_UNTYPED: dict[str, type[Any]] = {}


def _untyped(name: str) -> type[Message]:
    cls = _UNTYPED.get(name)
    if cls is None:
        cls = _UNTYPED[name] = type(f"Untyped[{name}]", (UntypedPayload,), {"type_name": name})
    return cls


class SwarmService:
    """A swarm, its Queen, memory, leadership, live config and HTTP API, from settings.

    Args:
        settings: What to run against.
        agents: The agents this process runs (none for a Queen alone, e.g. on
            Redis with agents in ``python -m swarm.agent`` processes).
        routes: Extra HTTP route installers (besides the ``queenswarm.routes``
            entry points).
        say: Called with one line for people at each step (the CLI's display).
        queen_id: This Queen's id (default: random).
        max_outstanding: Unfinished tasks past which the API answers 429.
        lead: Whether this process has a Queen that campaigns to lead (False
            for an agents-only process: ``python -m swarm.agent``).
        runtime_options: Extra keyword arguments of the runtime (e.g. the
            Redis runtime's ``visibility_timeout``, ``node_id``, ``prefix``).

    Attributes:
        swarm: The :class:`~swarm.swarm.Swarm` (after start).
        queen: Its Queen.
        runtime: Its runtime.
        memory: The memory coordinator.
        registry: The service registry (Consul, or process-local).
        live: The live config watcher.
        leadership: Who leads, and whether this Queen does.
        url: The HTTP API's base URL once it listens ("" without ``http``).
    """

    def __init__(
        self,
        settings: SwarmSettings,
        *,
        agents: Iterable[Agent] = (),
        routes: Sequence[RouteInstaller] = (),
        say: Callable[[str], None] | None = None,
        queen_id: str | None = None,
        max_outstanding: int = 50_000,
        lead: bool = True,
        runtime_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._agents = list(agents)
        self.routes = list(routes)
        self.say = say or (lambda text: None)
        self.queen_id = queen_id
        self.swarm: Swarm = None  # type: ignore[assignment]
        self.queen: Queen = None  # type: ignore[assignment]
        self.runtime: Runtime = None  # type: ignore[assignment]
        self.memory: Any = None
        self.llm: Any = None
        self.registry: Any = None
        self.live: Any = None
        self.leadership: Leadership = SoloLeadership(queen_id="-")
        self.url = ""
        self.draining = False
        self._redis: Any = None
        self._wired: Any = None
        self._elector: Any = None
        self._http: Any = None
        self._tasks = TaskSet("service")
        self._swarm_started = False
        self.max_outstanding = max_outstanding
        self.lead = lead
        self.runtime_options = dict(runtime_options or {})
        # Tasks submitted through this Queen's API, oldest first (bounded).
        self._recent: dict[str, None] = {}
        self._idempotency: dict[str, str] = {}
        self._types: dict[str, type[Message]] = {}
        self._types_at = -1e9

    async def __aenter__(self) -> SwarmService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(drain=exc_info[1] is None)

    # -- assembly -----------------------------------------------------------
    async def start(self) -> None:
        """Build and start everything the settings ask for.

        Raises:
            ConfigError: Bad settings (e.g. a public HTTP address without tokens).
            TransportError: A server could not be reached.
        """
        try:
            await self._start()
        except BaseException:
            await self.close(drain=False)
            raise

    async def _start(self) -> None:
        s = self.settings
        tokens = None
        if s.http is not None:
            from swarm.service.auth import TokenStore

            tokens = TokenStore.from_settings(s)  # bad tokens fail before any connection
        discovery: Any = None
        if s.consul_url is not None:
            (open_registry,) = _optional("discovery", ("open_registry",), "--consul")
            self.registry = await open_registry(s.consul_url)
            discovery = self.registry
        else:
            try:
                from discovery import InMemoryRegistry
            except ImportError:
                if s.shared:
                    raise
                _log.info("no discovery package: no live config")
            else:
                self.registry = InMemoryRegistry()
                await self.registry.start()
        self.runtime = await self._make_runtime(discovery)
        self.queen = Queen(runtime=self.runtime, queen_id=self.queen_id)
        self.swarm = Swarm(runtime=self.runtime, queen=self.queen, drain_timeout=s.drain_timeout)
        self.llm = self._make_llm()
        self.runtime.llm = self.llm  # type: ignore[attr-defined]
        self.memory = self._make_memory()
        self.runtime.memory = self.memory  # type: ignore[attr-defined]
        self.say(f"starting {self.describe()}")
        await self.swarm.__aenter__()
        self._swarm_started = True
        await self.memory.start()
        for agent in self._agents:
            await self.swarm.add_agent(agent)
        if s.consul_url is not None:
            (register_agents,) = _optional("discovery", ("register_agents",), "--consul")
            # Heartbeats run in the registry's own tasks: handler load cannot starve them.
            await register_agents(self.registry, self._agents, ttl=s.lease_ttl)
        if not self.lead:
            return
        if s.http is not None:
            from swarm.service.http import HttpServer

            self._http = HttpServer(self, tokens=tokens, routes=self._route_installers())
            self.url = await self._http.start()
        await self._start_leadership()
        if self._wired is not None and self._wired.live is not None:
            self.live = self._wired.live
        elif self.registry is not None:
            from discovery import LiveConfig

            self.live = LiveConfig(registry=self.registry, runtime=self.runtime, queen=self.queen)
            await self.live.start()
        if self._http is not None:
            self.say(f"HTTP API on {self.url} ({self._http.auth_summary})")

    async def _make_runtime(self, discovery: Any) -> Runtime:
        s = self.settings
        if s.redis_url is None:
            embedded = dict(self.runtime_options)
            default = SwarmSettings()
            if (s.retention, s.history_keep) != (default.retention, default.history_keep):
                # Finished tasks stay in this process: as many and as long as asked.
                embedded.setdefault(
                    "ledger", InMemoryLedger(max_final=s.history_keep, max_age=s.retention)
                )
            return InProcessRuntime(discovery=discovery, **embedded)
        runtime_cls, settings_cls, clients_cls = _optional(
            "swarm.redis", ("RedisRuntime", "RedisSettings", "RedisClients"), "--redis"
        )
        rs = settings_cls.from_dsn(s.redis_url, fastpath=s.redis_fastpath)
        self._redis = await clients_cls.connect(rs)
        self._redis_prefix = self.runtime_options.get("prefix") or rs.key_prefix
        # Fenced: a task this Queen stamps with a stale epoch is refused in Redis.
        options: dict[str, Any] = {"fence": LEADERSHIP} if self.lead else {}
        options["history"] = s.history  # retention, inbox bounds, the task history
        options.update(self.runtime_options)
        runtime: Runtime = runtime_cls(clients=self._redis, discovery=discovery, **options)
        return runtime

    def _make_memory(self) -> Any:
        s = self.settings
        coordinator, memory_settings, pg_settings, hot_settings = _optional(
            "memory",
            ("MemoryCoordinator", "MemorySettings", "PostgresSettings", "RedisHotSettings"),
            "memory",
        )
        postgres = pg_settings.from_dsn(s.postgres_url) if s.postgres_url else None
        hot = None
        if self._redis is not None:
            hot = hot_settings(url="redis://", prefix=self._redis_prefix, fastpath=s.redis_fastpath)
        settings = memory_settings(postgres=postgres, redis=hot)
        redis = self._redis.commands if self._redis is not None else None
        # Offline it writes the extractive synthesis, and says so once.
        summarizer = _optional("memory.synthesis", ("LlmSummarizer",), "memory")[0](
            self.llm.scope(role="memory", agent="synthesizer"))
        return coordinator(settings=settings, runtime=self.runtime, redis=redis,
                           summarizer=summarizer)

    def _make_llm(self) -> Any:
        """The model layer: shared limiter and budgets in Redis on a Redis swarm."""
        from swarm.llm.client import Llm

        redis = self._redis.commands if self._redis is not None else None
        return Llm.build(self.settings.llm, redis=redis,
                         prefix=getattr(self, "_redis_prefix", "swarm"))

    async def _start_leadership(self) -> None:
        s = self.settings
        if not s.shared:
            self.leadership = SoloLeadership(queen_id=self.queen.queen_id, url=self.url)
            return
        names = ("QueenDiscovery", "LeaderElector", "RedisLease", "FencedWriter",
                 "EpochReconciler")
        queen_discovery, leader_elector, redis_lease, fenced_writer, epoch_reconciler = (
            _optional("discovery", names, "leadership")
        )
        fence: Any = None
        lease: Any = None
        if self._redis is not None:
            commands = self._redis.commands
            fence = fenced_writer(redis=commands, name=LEADERSHIP, prefix=self._redis_prefix)
            lease = redis_lease(redis=commands, prefix=self._redis_prefix)
        consul = s.consul_url is not None
        elected = ElectedLeadership(
            elector=None,
            queen_id=self.queen.queen_id,
            url=self.url,
            registry=self.registry if consul else None,
            redis=None if consul or self._redis is None else self._redis.commands,
            prefix=getattr(self, "_redis_prefix", "swarm"),
            say=self.say,
        )

        async def announced() -> int:
            info = await elected.leader()
            return info.epoch if info is not None else 0

        # One epoch per leadership: the election's, raised past the fence and
        # the last announced leader's (a reset Consul KV starts again at 1).
        reconciler = epoch_reconciler(
            name=LEADERSHIP, fences=[fence] if fence is not None else [], floors=[announced],
            counted_by_election=not consul,
        )

        async def on_elected(lease_held: Any) -> int:
            epoch: int = await reconciler.on_elected(lease_held)
            await elected.announce(epoch)
            return epoch

        async def on_lost(lease_held: Any) -> None:
            await reconciler.on_lost(lease_held)
            self.say(f"leadership lost (epoch {lease_held.epoch}); standing by")

        if consul:
            self._wired = queen_discovery(
                queen=self.queen, registry=self.registry, ttl=s.lease_ttl, live_config=True,
                on_elected=on_elected, on_lost=on_lost, on_renewed=reconciler.on_renewed,
            )
            elected.elector = self._wired.elector
            await self._wired.start()
        else:
            self._elector = leader_elector(
                election=lease, name=LEADERSHIP, holder=self.queen.queen_id, ttl=s.lease_ttl,
                on_elected=on_elected, on_lost=on_lost, on_renewed=reconciler.on_renewed,
            )
            elected.elector = self._elector
            self.queen.set_dispatch(epoch=self._elector.current)
            await self._elector.start()
        self.leadership = elected

    def _route_installers(self) -> list[RouteInstaller]:
        found: list[RouteInstaller] = []
        for ep in entry_points(group=ROUTES_ENTRY_POINT_GROUP):
            try:
                found.append(ep.load())
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"cannot load HTTP routes {ep.value!r}: {exc}") from exc
        return found + self.routes

    async def wait_leading(self, *, timeout: float | None) -> None:
        """Wait until this Queen leads, telling ``say`` who leads meanwhile.

        Raises:
            SwarmTimeout: Not leading within ``timeout`` (the message names the leader).
        """
        await wait_with_hints(self.leadership, self.say, timeout=timeout)

    def begin_drain(self) -> None:
        """Refuse new writes (503 ``draining``) and report not ready, before :meth:`close`.

        Load balancers watching ``/readyz`` stop sending work while the API
        still answers reads and long-polls.
        """
        self.draining = True

    async def close(self, *, drain: bool = True) -> None:
        """Stop the API, step down, drain the swarm, close memory and the registry."""
        self.begin_drain()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._tasks.close()
        if self.live is not None and (self._wired is None or self.live is not self._wired.live):
            await self.live.close()
        self.live = None
        if self._wired is not None:
            await self._wired.close()
            self._wired = None
        if self._elector is not None:
            await self._elector.close()
            self._elector = None
        if not self.lead and self.settings.consul_url is not None and self.registry is not None:
            # Deregistered first: Queens stop routing here before the agents drain.
            for agent in self._agents:
                try:
                    await self.registry.deregister(agent.agent_id)
                except SwarmError as exc:
                    _log.warning("deregistration failed", agent_id=agent.agent_id, error=str(exc))
        if self._swarm_started:
            self._swarm_started = False
            self.swarm.leftovers = await self.runtime.stop(
                drain=drain, timeout=self.settings.drain_timeout
            )
        if self.memory is not None:
            await self.memory.close()
            self.memory = None
        if self.llm is not None:
            await self.llm.close()
            self.llm = None
        if self._redis is not None:
            await self._redis.close()
            self._redis = None
        if self.registry is not None:
            await self.registry.close()
            self.registry = None

    # -- what the API and dashboards query ------------------------------------
    def describe(self) -> str:
        """One line: agents, roles and runtime."""
        roles = sorted({a.role for a in self._agents})
        where = type(self.runtime).__name__
        agents = f"{len(self._agents)} agents ({', '.join(roles)})" if roles else "no local agents"
        return f"Queen with {agents} on {where}"

    async def roles(self) -> dict[str, RoleInfo]:
        """Roles known to the runtime, with their replicas."""
        return await self.runtime.directory()

    async def queue_stats(self) -> dict[str, QueueStats]:
        """Per role, tasks waiting to start by priority and the oldest one's age."""
        stats = getattr(self.runtime, "queue_stats", None)
        if stats is not None:
            return stats()  # type: ignore[no-any-return]
        if self._redis is not None:
            from swarm.service.queues import redis_queue_stats

            roles = await self.runtime.directory()
            return await redis_queue_stats(self._redis.commands, self._redis_prefix, roles)
        return {}

    async def message_class(self, name: str) -> type[Message] | None:
        """The class of a submittable message type, from a snapshot at most 1 s old.

        A name the snapshot lacks refreshes it (at most every 50 ms): a role
        that just joined is submittable at once, and a flood of unknown names
        cannot turn every request into a directory read.
        """
        now = time.monotonic()
        age = now - self._types_at
        if age > 1.0 or (name not in self._types and age > 0.05):
            self._types = await self.submittable()
            self._types_at = now
        return self._types.get(name)

    async def submittable(self) -> dict[str, type[Message]]:
        """Message types some role handles, by wire name.

        A type whose class this process cannot import (its agents run in
        other processes) is an :class:`UntypedPayload` subclass: its fields
        are forwarded as given, and the agent that decodes them validates them.
        """
        out: dict[str, type[Message]] = {}
        for info in (await self.runtime.directory()).values():
            for name in info.types:
                cls = lookup_message_type(name) or _untyped(name)
                out[name] = cls
        return out

    def ready(self) -> bool:
        """Whether the runtime is up (this Queen leads or stands by)."""
        return self.swarm is not None and not self.draining

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task that has not started; False when the runtime cannot or it ran.

        Raises:
            SwarmError: The runtime cannot cancel tasks at all.
        """
        cancel = getattr(self.runtime, "cancel", None)
        if cancel is None:
            raise SwarmError(f"{type(self.runtime).__name__} cannot cancel tasks")
        return bool(await cancel(task_id))

    async def health(self) -> dict[str, bool]:
        """Per agent id, whether the registry reports it healthy (agents it knows only)."""
        if self._wired is None:
            return {}
        out: dict[str, bool] = {}
        for role in await self.runtime.directory():
            try:
                for inst in await self.registry.healthy(role):
                    out[inst.id] = True
            except SwarmError:
                continue
        for info in (await self.runtime.directory()).values():
            for rep in info.replicas:
                out.setdefault(rep.agent_id, False)
        return out

    def note_task(self, task_id: str) -> None:
        """Remember a task submitted through the API (for listing, newest first)."""
        recent = self._recent
        recent.pop(task_id, None)
        recent[task_id] = None
        if len(recent) > _RECENT_MAX:
            del recent[next(iter(recent))]

    async def recent_records(self) -> list[TaskRecord]:
        """Records of the tasks submitted through the API, newest first."""
        ids = list(reversed(self._recent))
        ledger = self.runtime.ledger
        records = await asyncio.gather(*(ledger.get(i) for i in ids))
        return [r for r in records if r is not None]

    async def claim_idempotency_key(self, key: str, fingerprint: str) -> str | None:
        """Claim ``key`` for a request with ``fingerprint``; returns an earlier claim's.

        On Redis the claim is shared by every Queen of the swarm (24 h).
        """
        if self._redis is not None:
            from swarm.constants import api_idempotency_key

            name = api_idempotency_key(key, self._redis_prefix)
            commands = self._redis.commands
            if await commands.set(name, fingerprint, nx=True, ex=86_400):
                return None
            seen = await commands.get(name)
            return seen.decode() if isinstance(seen, bytes) else seen
        seen = self._idempotency.setdefault(key, fingerprint)
        if len(self._idempotency) > _RECENT_MAX:
            del self._idempotency[next(iter(self._idempotency))]
        return None if seen is fingerprint else seen

    def config_view(self) -> Any:
        """The live config in force, as the API shows it."""
        from swarm.service.api import ConfigView, RetryPolicyView

        live = self.live.settings
        policy = live.retry_policy
        return ConfigView(
            retry_policy=None if policy is None else RetryPolicyView(
                max_attempts=policy.max_attempts, base_delay=policy.base_delay,
                max_delay=policy.max_delay, jitter=policy.jitter,
            ),
            concurrency=dict(live.concurrency),
            version=live.version,
        )

    async def change_config(self, change: Any) -> None:
        """Write a :class:`~swarm.service.api.ConfigChange` and wait until it is applied."""
        import msgspec

        from discovery import CONFIG_PREFIX

        prefix = getattr(self.live, "prefix", CONFIG_PREFIX)
        if change.retry_policy is not None:
            await self.registry.put_config(
                prefix + "runtime/retry_policy", msgspec.json.encode(change.retry_policy)
            )
        for role, limit in change.concurrency.items():
            await self.registry.put_config(
                f"{prefix}agents/{role}/concurrency", str(limit).encode()
            )
        wanted_policy = change.retry_policy
        wanted = dict(change.concurrency)

        def applied(live: Any) -> bool:
            if any(live.concurrency.get(r) != n for r, n in wanted.items()):
                return False
            if wanted_policy is None:
                return True
            p = live.retry_policy
            return p is not None and (p.max_attempts, p.base_delay, p.max_delay, p.jitter) == (
                wanted_policy.max_attempts, wanted_policy.base_delay, wanted_policy.max_delay,
                wanted_policy.jitter,
            )

        try:
            await self.live.wait_for(applied, timeout=10)
        except TimeoutError:
            raise SwarmTimeout(
                "the config change was written but not applied within 10 s"
            ) from None
