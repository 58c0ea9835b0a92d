"""RedisSettings.from_dsn: URL forms, options, validation, and a round trip property."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from swarm.constants import KEY_PREFIX
from swarm.errors import ConfigError
from swarm.redis import RedisBroadcaster, RedisClients
from swarm.redis.settings import RedisSettings


def test_defaults_for_a_bare_url() -> None:
    s = RedisSettings.from_dsn("redis://localhost")
    assert s.nodes == (("localhost", 6379),)
    assert (s.db, s.username, s.password, s.ssl, s.cluster) == (0, None, None, False, False)
    assert s.key_prefix == KEY_PREFIX
    assert s.blocking_timeout > s.block_time


def test_acl_user_password_db_and_tls_options() -> None:
    s = RedisSettings.from_dsn(
        "rediss://app%40eu:p%3Ass%2Fw@redis.example:6380/4"
        "?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        "&ssl_cert_reqs=optional&ssl_check_hostname=false"
    )
    assert (s.host, s.port, s.db) == ("redis.example", 6380, 4)
    assert (s.username, s.password) == ("app@eu", "p:ss/w")
    assert s.ssl and s.ssl_cert_reqs == "optional" and not s.ssl_check_hostname
    assert (s.ssl_ca_certs, s.ssl_certfile, s.ssl_keyfile) == ("/etc/ca.pem", "/c.pem", "/k.pem")


def test_password_only_url_and_password_never_in_repr() -> None:
    s = RedisSettings.from_dsn("redis://:topsecret@h:1/0")
    assert s.username is None and s.password == "topsecret"
    assert "topsecret" not in repr(s)
    assert "topsecret" not in s.redacted_dsn()
    assert "topsecret" in s.to_dsn()


@pytest.mark.parametrize(
    "dsn",
    [
        "redis+cluster://a:7000,b:7001,c:7002",
        "rediss+cluster://a:7000,b:7001,c:7002",
        "redis://a:7000,b:7001,c:7002?cluster=true",
    ],
)
def test_cluster_urls(dsn: str) -> None:
    s = RedisSettings.from_dsn(dsn)
    assert s.cluster
    assert s.nodes == (("a", 7000), ("b", 7001), ("c", 7002))
    assert s.ssl == dsn.startswith("rediss")


def test_timeouts_block_time_retries_and_prefix() -> None:
    s = RedisSettings.from_dsn(
        "redis://h/1?socket_timeout=2&socket_connect_timeout=1.5&block_time=30"
        "&retry_attempts=7&retry_base=0.01&retry_cap=3&prefix=t-1&client_name=bee&protocol=3"
    )
    assert (s.socket_timeout, s.socket_connect_timeout, s.block_time) == (2.0, 1.5, 30.0)
    assert s.blocking_timeout == 32.0 and s.block_ms == 30_000
    assert (s.retry_attempts, s.retry_base, s.retry_cap) == (7, 0.01, 3.0)
    assert (s.key_prefix, s.client_name, s.protocol) == ("t-1", "bee", 3)


def test_ipv6_host() -> None:
    s = RedisSettings.from_dsn("redis://[::1]:6390/2")
    assert s.nodes == (("::1", 6390),)
    assert RedisSettings.from_dsn(s.to_dsn()) == s


def test_overrides_win_over_the_url() -> None:
    s = RedisSettings.from_dsn("redis://h/1?prefix=a", key_prefix="b", db=2)
    assert (s.key_prefix, s.db) == ("b", 2)


def test_replace_recomputes_the_derived_blocking_timeout() -> None:
    s = RedisSettings().replace(block_time=60.0)
    assert s.blocking_timeout == 60.0 + s.socket_timeout


@pytest.mark.parametrize(
    ("dsn", "fragment"),
    [
        ("http://h", "not a Redis URL"),
        ("localhost:6379", "not a Redis URL"),
        ("redis://h/x", "db must be an integer"),
        ("redis://h:notaport", "port must be an integer"),
        ("redis://h:70000", "port out of range"),
        ("redis://h?bogus=1", "unknown Redis URL option 'bogus'"),
        ("redis://h?cluster=maybe", "true or false"),
        ("redis://h?block_time=0", "block_time must be positive"),
        ("redis://h?block_time=10&blocking_socket_timeout=5", "must exceed block_time"),
        ("redis://h?socket_timeout=nan", "must be finite"),
        ("redis+cluster://h/3", "only database 0"),
        ("redis://a:1,b:2", "only valid for a cluster"),
        ("redis://h?ssl_ca_certs=/ca.pem", "need a rediss:// URL"),
        ("rediss://h?ssl_keyfile=/k.pem", "needs ssl_certfile"),
        ("rediss://h?ssl_cert_reqs=always", "ssl_cert_reqs"),
        ("redis://h?prefix={x}", "key_prefix"),
        ("redis://h?protocol=4", "protocol"),
        ("redis://h?retry_attempts=-1", "retry_attempts"),
    ],
)
def test_invalid_urls_are_config_errors(dsn: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        RedisSettings.from_dsn(dsn)


def test_error_messages_never_contain_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        RedisSettings.from_dsn("redis://u:hunter2@h?bogus=1")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        RedisSettings.from_dsn("http://u:hunter2@h")
    assert "hunter2" not in str(info.value)


_text = st.text(
    alphabet=string.ascii_letters + string.digits + ":@/?#%&= +", min_size=1, max_size=12
)
_host = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?\Z")
_seconds = st.floats(min_value=0.01, max_value=3600, allow_nan=False, allow_infinity=False)


@st.composite
def _settings(draw: st.DrawFn) -> RedisSettings:
    cluster = draw(st.booleans())
    ssl = draw(st.booleans())
    nodes = tuple(
        draw(
            st.lists(
                st.tuples(_host, st.integers(1, 65535)),
                min_size=1,
                max_size=3 if cluster else 1,
            )
        )
    )
    certfile = draw(st.none() | st.just("/tls/client.pem")) if ssl else None
    return RedisSettings(
        nodes=nodes,
        db=0 if cluster else draw(st.integers(0, 15)),
        username=draw(st.none() | _text),
        password=draw(st.none() | _text),
        ssl=ssl,
        ssl_ca_certs=draw(st.none() | st.just("/tls/ca.pem")) if ssl else None,
        ssl_certfile=certfile,
        ssl_keyfile=draw(st.none() | st.just("/tls/client.key")) if certfile else None,
        ssl_cert_reqs=draw(st.sampled_from(["none", "optional", "required"])),
        ssl_check_hostname=draw(st.booleans()),
        cluster=cluster,
        key_prefix=draw(st.from_regex(r"\A[a-z][a-z0-9:_-]{0,12}\Z")),
        socket_timeout=draw(_seconds),
        socket_connect_timeout=draw(_seconds),
        block_time=draw(_seconds),
        retry_attempts=draw(st.integers(0, 20)),
        watchdog_interval=draw(_seconds),
        retry_base=draw(st.floats(0, 1)),
        retry_cap=draw(st.floats(1, 10)),
        max_connections=draw(st.none() | st.integers(1, 1000)),
        client_name=draw(st.none() | st.from_regex(r"\A[a-z]{1,8}\Z")),
        protocol=draw(st.sampled_from([2, 3])),
    )


@settings(max_examples=200, deadline=None)
@given(_settings())
def test_to_dsn_round_trips(s: RedisSettings) -> None:
    assert RedisSettings.from_dsn(s.to_dsn()) == s


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_is_parsed_or_rejected_with_config_error(text: str) -> None:
    for dsn in (text, "redis://" + text):
        try:
            RedisSettings.from_dsn(dsn)
        except ConfigError:
            pass


def test_watchdog_interval_from_the_url_reaches_the_broadcaster() -> None:
    settings = RedisSettings.from_dsn("redis://h/0?watchdog_interval=1.5")
    clients = RedisClients.from_clients(Redis(), settings=settings)
    bus = RedisBroadcaster(clients=clients)
    assert (bus.watchdog_interval, bus.pong_timeout) == (1.5, 0.75)
    assert RedisBroadcaster(clients=clients, watchdog_interval=3).watchdog_interval == 3
