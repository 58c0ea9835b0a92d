"""ConsulRegistry specifics: settings, errors, ACL, TTL checks, blocking queries, session locks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from discovery import (
    ConsulRegistry,
    ConsulSettings,
    InMemoryRegistry,
    LeaderElector,
    ServiceInstance,
    open_registry,
)
from swarm.errors import AclDenied, ConfigError, DiscoveryError, LeadershipLost, TransportError
from tests.consul_server import FakeConsul
from tests.discovery.conftest import LOCK_DELAY, consul_settings
from tests.discovery.util import eventually

# Most tests here talk to the Consul test server over HTTP.
pytestmark = pytest.mark.integration

SECRET = "tok-3f9c2a-very-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def consul(fake_consul: FakeConsul) -> AsyncIterator[ConsulRegistry]:
    reg = ConsulRegistry(settings=consul_settings(fake_consul.address),
                         deregister_critical_after=0.5)
    await reg.start()
    yield reg
    await reg.close()


# -- settings ---------------------------------------------------------------------
def test_from_dsn() -> None:
    s = ConsulSettings.from_dsn(f"consul://{SECRET}@10.1.2.3:8600?dc=dc2&session_ttl=15&wait=5")
    assert (s.host, s.port, s.scheme, s.dc, s.session_ttl, s.wait) == (
        "10.1.2.3", 8600, "http", "dc2", 15.0, 5.0)
    assert s.token == SECRET and SECRET not in repr(s)
    assert s.http_timeout > s.wait + s.wait / 16
    tls = ConsulSettings.from_dsn("consuls://consul.example?verify=/etc/ca.pem&cert=/c.pem")
    assert (tls.scheme, tls.port, tls.verify, tls.cert) == ("https", 8501, "/etc/ca.pem", "/c.pem")
    assert ConsulSettings.from_dsn("consuls://h?verify=false").verify is False
    assert ConsulSettings.from_dsn("consul://h").token is None


def test_http_urls_are_accepted() -> None:
    assert ConsulSettings.from_dsn("http://h:8600").address == "http://h:8600"
    tls = ConsulSettings.from_dsn("https://t@h")
    assert (tls.scheme, tls.port, tls.token) == ("https", 8501, "t")


@pytest.mark.parametrize("dsn", ["redis://h:8500", "consul://h?bogus=1", "consul://h?wait=soon",
                                 "consul://h:notaport"])
def test_from_dsn_rejects(dsn: str) -> None:
    with pytest.raises(ConfigError):
        ConsulSettings.from_dsn(dsn)


# -- unreachable / ACL ---------------------------------------------------------------
async def test_unreachable_names_the_address() -> None:
    port = free_port()
    reg = ConsulRegistry(settings=ConsulSettings(host="127.0.0.1", port=port, token=SECRET))
    with pytest.raises(DiscoveryError) as err:
        await reg.start()
    assert isinstance(err.value, TransportError)
    assert f"127.0.0.1:{port}" in str(err.value) and "unreachable" in str(err.value)
    assert SECRET not in str(err.value)


async def test_unreachable_falls_back_to_memory_with_warning() -> None:
    dsn = f"consul://127.0.0.1:{free_port()}"
    with pytest.raises(DiscoveryError):
        await open_registry(dsn)
    with structlog.testing.capture_logs() as logs:
        reg = await open_registry(dsn, fallback_to_memory=True)
    assert isinstance(reg, InMemoryRegistry)
    assert any(e["log_level"] == "warning" and "in-memory" in e["event"] for e in logs)
    await reg.close()


async def test_acl_denied_names_permission_not_token() -> None:
    async with FakeConsul(acl_tokens={"right-token"}) as server:
        reg = ConsulRegistry(settings=consul_settings(server.address, token=SECRET))
        await reg.start()  # /v1/status/leader needs no ACL
        with pytest.raises(AclDenied) as err:
            await reg.register(ServiceInstance(role="coder", id="c1"), ttl=5)
        assert err.value.permission == "service:write on 'coder'"
        assert "service:write" in str(err.value) and server.address in str(err.value)
        assert SECRET not in str(err.value) and SECRET not in repr(err.value)
        with pytest.raises(AclDenied) as err2:
            await reg.get_config("swarm/config/x")
        assert "key:read" in str(err2.value) and SECRET not in str(err2.value)
        await reg.close()
        ok = ConsulRegistry(settings=consul_settings(server.address, token="right-token"))
        await ok.start()
        await ok.register(ServiceInstance(role="coder", id="c1"), ttl=5)
        assert [i.id for i in await ok.healthy("coder")] == ["c1"]
        await ok.close()


async def test_env_token_does_not_override_settings(
    monkeypatch: pytest.MonkeyPatch, fake_consul: FakeConsul
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    reg = ConsulRegistry(settings=consul_settings(fake_consul.address, token="from-settings"))
    await reg.start()
    assert reg.client.token == "from-settings"
    await reg.close()


# -- registration and heartbeats --------------------------------------------------------


async def test_registers_ttl_check_and_deregisters_on_close(fake_consul: FakeConsul) -> None:
    reg = ConsulRegistry(settings=consul_settings(fake_consul.address),
                         deregister_critical_after=90)
    await reg.start()
    await reg.register(ServiceInstance(role="coder", id="c1", port=7000), ttl=4)
    check = fake_consul.checks["service:c1"]
    assert (check.ttl, check.deregister_after, check.status) == (4.0, 90.0, "passing")
    assert fake_consul.services["c1"].port == 7000
    await reg.close()
    assert fake_consul.services == {} and fake_consul.checks == {}


async def test_heartbeat_survives_a_busy_event_loop(
    consul: ConsulRegistry, fake_consul: FakeConsul
) -> None:
    await consul.register(ServiceInstance(role="coder", id="c1"), ttl=1.0)
    statuses: list[str] = []

    async def busy() -> None:
        # Many async handlers hogging the loop in turns, as a loaded agent does.
        while True:
            sum(range(2000))
            await asyncio.sleep(0)

    hogs = [asyncio.create_task(busy()) for _ in range(50)]
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            statuses.append(fake_consul.checks["service:c1"].status)
            await asyncio.sleep(0.05)
    finally:
        for h in hogs:
            h.cancel()
        await asyncio.gather(*hogs, return_exceptions=True)
    assert statuses and set(statuses) == {"passing"}


async def test_keepalive_reregisters_after_being_reaped(
    consul: ConsulRegistry, fake_consul: FakeConsul
) -> None:
    await consul.register(ServiceInstance(role="coder", id="c1"), ttl=0.6)
    await fake_consul._deregister("c1")  # as if the agent restarted and forgot us

    async def back() -> bool:
        return "c1" in fake_consul.services

    await eventually(back, within=3)


# -- blocking queries ---------------------------------------------------------------------
async def test_watch_blocks_instead_of_polling(
    consul: ConsulRegistry, fake_consul: FakeConsul
) -> None:
    first = asyncio.Event()

    async def observe() -> None:
        async for _ in consul.watch("coder"):
            first.set()

    task = asyncio.create_task(observe())
    await asyncio.wait_for(first.wait(), 5)
    before = sum(1 for _, p in fake_consul.requests if p == "/v1/health/service/coder")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), 1.0)  # idle second: nothing changes
    after = sum(1 for _, p in fake_consul.requests if p == "/v1/health/service/coder")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert after - before <= 1  # one blocking request in flight, not a poll loop


async def test_blocking_index_resets_when_it_goes_backwards(consul: ConsulRegistry) -> None:
    answers = [(5, "a"), (5, "a"), (9, "b"), (3, "c"), (4, "d")]
    asked: list[int] = []

    async def fetch(index: int) -> tuple[int, str]:
        asked.append(index)
        return answers.pop(0)

    got = []
    async for value in consul._blocking(fetch):
        got.append(value)
        if not answers:
            break
    assert got == ["a", "b", "c", "d"]
    assert asked == [0, 5, 5, 9, 0]


# -- leadership on session locks ---------------------------------------------------------
async def test_leader_bound_to_its_check_loses_lock_when_critical(
    fake_consul: FakeConsul,
) -> None:
    a = ConsulRegistry(settings=consul_settings(fake_consul.address))
    settings_b = consul_settings(fake_consul.address)
    b = ConsulRegistry(settings=ConsulSettings(
        host=settings_b.host, port=settings_b.port, prefix=a.settings.prefix,
        lock_delay=LOCK_DELAY))
    await a.start()
    await b.start()
    await a.register(ServiceInstance(role="queen", id="qa"), ttl=30)
    lease = await a.acquire("queen", "qa", ttl=30)
    assert lease is not None
    session = fake_consul.sessions[lease.token]
    assert "service:qa" in session.checks and session.lock_delay == LOCK_DELAY
    await fake_consul.set_check("service:qa", "critical")  # e.g. the process stalled
    with pytest.raises(LeadershipLost):
        await a.renew(lease)

    new: Any = None

    async def taken() -> bool:
        nonlocal new
        new = await b.acquire("queen", "qb", ttl=30)
        return new is not None

    took = await eventually(taken, within=LOCK_DELAY + 2)
    assert took >= LOCK_DELAY * 0.8  # lock-delay was honoured
    assert new.epoch == lease.epoch + 1 == await a.current_epoch("queen")
    await b.close()
    await a.close()


async def test_two_electors_fail_over(fake_consul: FakeConsul) -> None:
    settings = consul_settings(fake_consul.address)
    regs = [ConsulRegistry(settings=settings) for _ in range(2)]
    for r in regs:
        await r.start()
    ttl = 0.3
    electors = [LeaderElector(election=r, name="queen", holder=f"q{i}", ttl=ttl,
                              retry_interval=0.05) for i, r in enumerate(regs)]
    for e in electors:
        await e.start()

    async def one_leads() -> bool:
        return sum(e.leading for e in electors) == 1

    await eventually(one_leads, within=5)
    creates = sum(1 for _, p in fake_consul.requests if p == "/v1/session/create")
    await asyncio.sleep(10 * 0.05)  # ten standby attempts' worth of time
    # The standby keeps one session across attempts instead of one per attempt.
    assert sum(1 for _, p in fake_consul.requests if p == "/v1/session/create") == creates
    assert len(fake_consul.sessions) == 2
    leader = next(e for e in electors if e.leading)
    other = next(e for e in electors if not e.leading)
    first_epoch = leader.epoch
    # Crash the leader: its task stops without releasing (as SIGKILL would).
    await leader._tasks.close()
    started = time.monotonic()
    await other.wait_leading(timeout=2 * ttl + LOCK_DELAY + 5)
    assert time.monotonic() - started <= 2 * ttl + LOCK_DELAY + 5
    assert other.epoch > first_epoch
    leader.lease = None
    for e in electors:
        await e.close()
    for r in regs:
        await r.close()


# -- TLS ------------------------------------------------------------------------------------
@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


async def test_tls_with_ca_bundle(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with FakeConsul(ssl_context=context) as server:
        untrusted = ConsulRegistry(settings=ConsulSettings.from_dsn(f"consuls://{server.address}"))
        with pytest.raises(DiscoveryError, match="unreachable"):
            await untrusted.start()  # the self-signed certificate is not trusted
        dsn = f"consuls://{server.address}?verify={cert}&dc=dc1"
        reg = ConsulRegistry(settings=ConsulSettings.from_dsn(dsn))
        await reg.start()
        await reg.register(ServiceInstance(role="coder", id="c1"), ttl=5)
        assert [i.id for i in await reg.healthy("coder")] == ["c1"]
        await reg.close()
        insecure = ConsulRegistry(
            settings=ConsulSettings.from_dsn(f"consuls://{server.address}?verify=false"))
        await insecure.start()
        await insecure.close()


async def test_no_cluster_leader_is_a_clear_error(fake_consul: FakeConsul) -> None:
    fake_consul.leader = ""
    reg = ConsulRegistry(settings=consul_settings(fake_consul.address))
    with pytest.raises(DiscoveryError, match="no cluster leader"):
        await reg.start()


async def test_usable_without_start_as_the_cli_wires_it(fake_consul: FakeConsul) -> None:
    reg = ConsulRegistry(settings=ConsulSettings.from_dsn(fake_consul.url))
    await reg.register(ServiceInstance(role="coder", id="c1"), ttl=5)
    assert [i.id for i in await reg.healthy("coder")] == ["c1"]
    await reg.close()
    assert fake_consul.services == {}


async def test_watchers_end_when_the_registry_closes(fake_consul: FakeConsul) -> None:
    reg = ConsulRegistry(settings=consul_settings(fake_consul.address))
    await reg.start()
    first = asyncio.Event()

    async def observe() -> None:
        async for _ in reg.watch("coder"):
            first.set()

    task = asyncio.create_task(observe())
    await asyncio.wait_for(first.wait(), 5)
    await reg.close()
    await asyncio.wait_for(task, 5)  # ends instead of retrying forever
    with pytest.raises(DiscoveryError, match="closed"):
        await reg.healthy("coder")
