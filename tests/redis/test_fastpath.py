"""The one door to redis-py's internals: version check, public fallback, and the rule itself."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from structlog.testing import capture_logs

from swarm.errors import ConfigError
from swarm.redis import RedisClients, RedisSettings, fastpath
from swarm.redis.connections import PipelineConnection, close_dedicated, dedicated
from swarm.redis.streams import PipelineBatcher
from swarm.tasks import TaskSet
from tests.redis.runtime_support import cleanup, make_runtime, new_prefix
from tests.servers import require_redis

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("swarm", "memory", "discovery", "agents")
DOOR = ROOT / "swarm" / "redis" / "fastpath.py"


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the warnings already logged, so this test sees its own."""
    monkeypatch.setattr(fastpath, "_warned", set())
    yield


@pytest.mark.parametrize(
    ("version", "ok"),
    [("8.1.0", True), ("8.2.0", True), ("8.2.13", True), ("8.3.0", False),
     ("9.0.0", False), ("7.4.2", False), ("8.10.0", False), ("8.1", True)],
)
def test_only_the_verified_series_are_verified(version: str, ok: bool) -> None:
    assert fastpath.verified(version) is ok


def test_the_installed_redis_py_is_verified() -> None:
    # The pins allow 8.1 and 8.2; CI runs both. A newer one in range would
    # still work (public path), but this says the door needs re-verifying.
    assert fastpath.verified(redis.__version__), redis.__version__


def test_an_unverified_version_selects_the_public_path_with_one_warning(
    fresh_warnings: None,
) -> None:
    with capture_logs() as logs:
        assert fastpath.select(True, version="8.3.0") is False
        assert fastpath.select(True, version="8.3.0") is False
        assert fastpath.select(True, version="8.2.1") is True
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1 and "8.3.0" in warnings[0]["event"]
    assert "public API" in warnings[0]["event"]


def test_settings_turn_it_off_with_one_warning(fresh_warnings: None) -> None:
    with capture_logs() as logs:
        assert fastpath.select(False, version="8.2.0") is False
        assert fastpath.select(False, version="8.2.0") is False
    assert [e["log_level"] for e in logs] == ["warning"]


def test_the_environment_sets_the_default_of_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fastpath, "_default", True)
    fastpath.configure_from({})
    assert RedisSettings().fastpath is True
    fastpath.configure_from({"SWARM_REDIS_FASTPATH": "0"})
    assert RedisSettings().fastpath is False
    assert RedisSettings(fastpath=True).fastpath is True  # explicit wins
    assert RedisSettings.from_dsn("redis://h/0?fastpath=true").fastpath is True
    with pytest.raises(ConfigError, match="SWARM_REDIS_FASTPATH"):
        fastpath.configure_from({"SWARM_REDIS_FASTPATH": "maybe"})


def test_the_cli_settings_read_swarm_redis_fastpath() -> None:
    from swarm.settings import SwarmSettings

    assert SwarmSettings.from_env({}).redis_fastpath is True
    assert SwarmSettings.from_env({"SWARM_REDIS_FASTPATH": "0"}).redis_fastpath is False
    assert SwarmSettings.from_env({"SWARM_REDIS_FASTPATH": "yes"}).redis_fastpath is True
    with pytest.raises(ConfigError, match="SWARM_REDIS_FASTPATH"):
        SwarmSettings.from_env({"SWARM_REDIS_FASTPATH": "sometimes"})


@pytest.mark.integration
async def test_an_unverified_redis_py_runs_the_runtime_on_the_public_api(
    monkeypatch: pytest.MonkeyPatch, fresh_warnings: None
) -> None:
    # The version is injected through the door's own view of it; redis-py is untouched.
    monkeypatch.setattr(fastpath, "INSTALLED", "8.99.0")
    settings = RedisSettings.from_dsn(require_redis(), fastpath=True)
    with capture_logs() as logs:
        clients = await RedisClients.connect(settings)
    try:
        assert [e for e in logs if "8.99.0" in e["event"]]
        for client in (clients.commands, clients.blocking):
            assert not fastpath.active(client)
        pipe = PipelineConnection(clients.commands).pipeline()
        assert type(pipe) is Pipeline  # redis-py's own, not the held one
        reader = dedicated(clients.blocking)
        assert type(reader) is Redis
        await close_dedicated(reader, clients.blocking)
        # And it does the work: a runtime on these clients gets its results.
        prefix = new_prefix()
        runtime = make_runtime(clients.commands, prefix)
        from tests.fakes import Board, Work, Worker

        try:
            await runtime.start()
            await runtime.register(Worker(Board()))
            results = [
                await runtime.send(Work(n=n), to="role:worker", sender="t", timeout=10)
                for n in range(5)
            ]
            assert results == [2 * n for n in range(5)]
        finally:
            await runtime.stop(drain=False)
            await cleanup(clients.commands, prefix)
    finally:
        await clients.close()


@pytest.mark.integration
async def test_the_public_pipeline_path_still_batches_a_wave_into_one_round_trip() -> None:
    client = Redis.from_url(require_redis(), socket_timeout=10)
    assert not fastpath.active(client)
    batcher = PipelineBatcher(client)
    tasks = TaskSet("fastpath-test")
    executed: list[int] = []
    execute = Pipeline.execute

    async def counted(self: Pipeline, raise_on_error: bool = True) -> Any:
        executed.append(len(self))
        return await execute(self, raise_on_error)

    task = tasks.spawn(batcher.run(), name="batcher")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Pipeline, "execute", counted)
            import asyncio

            replies = await asyncio.gather(
                *(batcher.call(lambda pipe: pipe.ping()) for _ in range(20))
            )
        assert all(r == [True] for r in replies)
        assert len(executed) < 20 and sum(executed) == 20
    finally:
        task.cancel()
        await tasks.close()
        await client.aclose()


# --- the rule: no private redis-py name outside the door -----------------------

# redis-py internals that carry no underscore: pipeline and connection
# internals, its serializer and its hiredis glue.
_INTERNAL = {
    "HiredisRespSerializer", "command_stack", "parse_response", "raise_first_error",
    "send_packed_command", "pack_command", "pack_commands", "should_reconnect",
    "next_health_check", "explicit_transaction", "call_with_retry", "update_retries",
}
_IMPORTS = re.compile(
    r"^\s*(?:from|import)\s+(?:hiredis\b|redis\._|redis\.utils\b|redis\.connection\b"
    r"|redis\.asyncio\.connection\b|redis\._parsers\b)",
    re.MULTILINE,
)
_REDIS_CLASSES = {"Connection", "SSLConnection", "UnixDomainSocketConnection", "Pipeline",
                  "Redis", "RedisCluster", "ClusterPipeline", "ConnectionPool", "PubSub"}
# Our own attributes whose names happen to be redis-py's private ones too.
_OURS = {("swarm/redis/broadcast.py", "sub._closed")}


def _redis_private_names() -> set[str]:
    """Every ``_name`` (not dunder) redis-py's classes define, or set on ``self``."""
    import importlib
    import inspect
    import pkgutil

    names: set[str] = set()
    for info in pkgutil.walk_packages(redis.__path__, "redis."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # optional parts (OCSP, ...) need extras
            continue
        for obj in vars(module).values():
            if inspect.isclass(obj) and obj.__module__.startswith("redis"):
                names.update(a for a in dir(obj) if a.startswith("_") and a[1:2] != "_")
        if getattr(module, "__file__", None):
            names.update(re.findall(r"self\.(_[a-z]\w*)", Path(module.__file__).read_text()))
    return names


def _sources() -> list[Path]:
    return sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py") if p != DOOR)


def test_no_private_redis_py_name_outside_the_door() -> None:
    private = _redis_private_names()
    assert {"_writer", "_reader", "_single_conn_lock"} <= private  # the scan sees them
    access = re.compile(r"(?<![\w.])(\w+)\.(\w+)\b")
    by_string = re.compile(r"(?:get|set|has|del)attr\([^,()]+,\s*[\"'](\w+)[\"']")
    found: list[str] = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if _IMPORTS.match(line):
                found.append(f"{rel}:{n}: {line.strip()}")
            for m in access.finditer(line):
                recv, name = m.groups()
                if recv in ("self", "cls") and name not in _INTERNAL:
                    continue  # our own classes (no redis-py subclass lives outside)
                if (name in private or name in _INTERNAL) and (rel, m.group(0)) not in _OURS:
                    found.append(f"{rel}:{n}: {m.group(0)}")
            for m in by_string.finditer(line):
                if m.group(1) in private or m.group(1) in _INTERNAL:
                    found.append(f"{rel}:{n}: {m.group(0)}")
            for word in _INTERNAL:
                if re.search(rf"\b{word}\b", line) and not line.lstrip().startswith("#"):
                    found.append(f"{rel}:{n}: {word}")
        # A subclass of a redis-py client class reaches its internals through self.
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                    if name in _REDIS_CLASSES:
                        found.append(f"{rel}:{node.lineno}: class {node.name}({name})")
    assert not found, "redis-py internals outside swarm/redis/fastpath.py:\n" + "\n".join(
        sorted(set(found))
    )


def test_the_scan_catches_a_private_name() -> None:
    # The rule's own check: the same scan over the door finds what it holds.
    text = DOOR.read_text()
    assert "_single_conn_lock" in text and "HiredisRespSerializer" in text
    assert _IMPORTS.search(text)
