"""The replica read script (``FETCH``) against the real server: band order and pending reads."""

from __future__ import annotations

import pytest
from redis.asyncio import ConnectionPool, Redis

from swarm.redis.connections import close_dedicated, dedicated
from swarm.redis.streams import FETCH, band_of, parse_entries, parse_read
from tests.redis.runtime_support import cleanup, new_prefix, redis_client
from tests.servers import require_redis

pytestmark = pytest.mark.integration


async def test_fetch_reads_best_first_across_empty_and_missing_streams() -> None:
    redis = await redis_client()
    prefix = new_prefix()
    # Best first: an empty stream, a stream with entries, another empty one,
    # then a second stream with entries (the XLEN skip must not hide either).
    streams = [f"{prefix}:{{r}}:s{i}" for i in range(4)]
    try:
        for s in streams:
            await redis.xgroup_create(s, "g", id="0", mkstream=True)
        for i in range(3):
            await redis.xadd(streams[1], {"e": f"b{i}".encode()})
        await redis.xadd(streams[3], {"e": b"d0"})
        await redis.xadd(streams[3], {"e": b"d1"})

        def read(count: int, start: str) -> object:
            return redis.eval(FETCH, len(streams), *streams, "g", "w", count, start)

        first = parse_entries(await read(4, ">"))
        assert [(e.key_index, e.get(b"e")) for e in first] == [
            (1, b"b0"),
            (1, b"b1"),
            (1, b"b2"),
            (3, b"d0"),
        ]
        rest = parse_entries(await read(10, ">"))
        assert [(e.key_index, e.get(b"e")) for e in rest] == [(3, b"d1")]
        assert parse_entries(await read(10, ">")) == []

        # Pending reads ("0") still see every stream, and ack an entry deleted
        # while pending (the stream may be empty by then).
        await redis.xdel(streams[3], rest[0].entry_id)
        pending = parse_entries(await read(10, "0"))
        assert [(e.key_index, e.deliveries) for e in pending] == [(1, 2)] * 3 + [(3, 2)]
        assert (await redis.xpending(streams[3], "g"))["pending"] == 1
        await redis.xdel(streams[3], pending[-1].entry_id)
        assert parse_entries(await read(10, "0")) != []  # stream 1's entries
        assert (await redis.xpending(streams[3], "g"))["pending"] == 0
    finally:
        await cleanup(redis, prefix)
        await redis.aclose()


def test_band_of_clamps_to_the_bands() -> None:
    assert [band_of(p) for p in (-5, 0, 3, 9, 12)] == [0, 0, 3, 9, 9]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_raw_blocking_read_parses_like_fetch(protocol: int) -> None:
    client = Redis(connection_pool=ConnectionPool.from_url(require_redis(), protocol=protocol))
    prefix = new_prefix()
    streams = [f"{prefix}:{{r}}:s{i}" for i in range(3)]
    reader = dedicated(client, raw=("XREADGROUP",))
    try:
        for s in streams:
            await client.xgroup_create(s, "g", id="0", mkstream=True)
        # Added worst stream first: the parsed entries still come best first.
        last = await client.xadd(streams[2], {"e": b"c0", "x": b"1"})
        await client.xadd(streams[0], {"e": b"a0"})
        await client.xadd(streams[0], {"e": b"a1"})
        reply = await reader.xreadgroup("g", "w", dict.fromkeys(streams, ">"), count=10, block=10)
        got = parse_read(reply, streams)
        assert [(e.key_index, e.fields, e.deliveries) for e in got] == [
            (0, [b"e", b"a0"], 1),
            (0, [b"e", b"a1"], 1),
            (2, [b"e", b"c0", b"x", b"1"], 1),
        ]
        assert got[2].entry_id == last and got[2].get(b"x") == b"1" and got[0].get(b"x") is None
        empty = await reader.xreadgroup("g", "w", dict.fromkeys(streams, ">"), count=10, block=10)
        assert parse_read(empty, streams) == []
        # The client the reader was made from still parses its replies.
        await client.xadd(streams[1], {"e": b"b0"})
        parsed = await client.xreadgroup("g", "w", {streams[1]: ">"}, count=10)
        assert "{b'e': b'b0'}" in repr(parsed)
    finally:
        await close_dedicated(reader, client)
        await cleanup(client, prefix)
        await client.aclose()
