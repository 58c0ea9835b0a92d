"""rediss:// with an ACL user and a client certificate, against a private TLS redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from redis.asyncio import Redis, SSLConnection

from swarm.errors import TransportError
from swarm.messages import Envelope, Kind, new_id
from swarm.redis import RedisBroadcaster, RedisClients, RedisSettings
from tests.redis_server import RedisServer, TlsFiles

pytestmark = pytest.mark.integration

USER, PASSWORD = "bee", "p@ss:w/rd?#"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    acl = ("--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all")
    with RedisServer.launch(tls=True, extra_args=acl) as s:
        yield s


def _dsn(server: RedisServer, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    auth = f"{USER}:{quote(PASSWORD, safe='')}@"
    return f"rediss://{auth}127.0.0.1:{server.tls_port}/0" + (f"?{query}" if query else "")


def _tls(server: RedisServer) -> TlsFiles:
    assert server.tls is not None
    return server.tls


async def test_acl_user_over_tls_with_client_certificate(server: RedisServer) -> None:
    files = _tls(server)
    settings = RedisSettings.from_dsn(
        _dsn(
            server,
            ssl_ca_certs=str(files.ca),
            ssl_certfile=str(files.client_cert),
            ssl_keyfile=str(files.client_key),
        )
    )
    assert settings.ssl_check_hostname  # the server certificate names 127.0.0.1
    clients = await RedisClients.connect(settings)
    try:
        for client in (clients.commands, clients.pubsub, clients.blocking):
            assert isinstance(client, Redis)
            assert client.connection_pool.connection_class is SSLConnection
            whoami = await client.execute_command("ACL WHOAMI")  # type: ignore[no-untyped-call]
            assert whoami in (USER, USER.encode())
        bus = RedisBroadcaster(clients=clients, watchdog_interval=0.2)
        await bus.start()
        try:
            queue: asyncio.Queue[Envelope] = asyncio.Queue()
            await bus.subscribe("swarm-test:tls", queue.put)
            await bus.wait_for_pongs(1, timeout=2.0)
            env = Envelope(id=new_id(), kind=Kind.EVENT, type="", sender="test")
            await bus.publish("swarm-test:tls", env)
            assert (await asyncio.wait_for(queue.get(), 5.0)).id == env.id
        finally:
            await bus.stop()
    finally:
        await clients.close()


async def test_unverifiable_server_certificate_is_refused(server: RedisServer) -> None:
    # The client certificate is not a CA: the server's chain cannot verify.
    settings = RedisSettings.from_dsn(
        _dsn(server, ssl_ca_certs=str(_tls(server).client_cert), retry_attempts="0")
    )
    with pytest.raises(TransportError):
        await RedisClients.connect(settings)


async def test_cert_reqs_none_skips_verification(server: RedisServer) -> None:
    clients = await RedisClients.connect(RedisSettings.from_dsn(_dsn(server, ssl_cert_reqs="none")))
    try:
        assert await clients.commands.ping()
    finally:
        await clients.close()


async def test_wrong_password_is_a_transport_error(server: RedisServer) -> None:
    dsn = f"rediss://{USER}:wrong@127.0.0.1:{server.tls_port}/0?ssl_cert_reqs=none&retry_attempts=0"
    with pytest.raises(TransportError, match="AuthenticationError"):
        await RedisClients.connect(RedisSettings.from_dsn(dsn))
