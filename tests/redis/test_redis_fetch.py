"""The replica read script (``FETCH``) against the real server: band order and pending reads."""

from __future__ import annotations

import pytest

from swarm.redis.streams import FETCH, band_of, parse_entries
from tests.redis.runtime_support import cleanup, new_prefix, redis_client

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
        assert [(e.key_index, e.fields[b"e"]) for e in first] == [
            (1, b"b0"),
            (1, b"b1"),
            (1, b"b2"),
            (3, b"d0"),
        ]
        rest = parse_entries(await read(10, ">"))
        assert [(e.key_index, e.fields[b"e"]) for e in rest] == [(3, b"d1")]
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
