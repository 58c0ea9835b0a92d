"""The SSRF guard and the fetcher, against local aiohttp sites serving real excerpts."""

from __future__ import annotations

import socket
import time

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from agents.fetch import (
    Fetcher,
    FetchError,
    FetchRefused,
    FetchSettings,
    GuardedResolver,
    GuardSettings,
    SsrfGuard,
)
from tests.agents.web_server import Site

#: SSRF payloads: each must be refused with a reason by a guard with an empty allow-list.
PAYLOADS = [
    "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://example.com/", "dict://x:11211/",
    "javascript:alert(1)", "data:text/html,hi", "http:///nohost", "http://user:pw@example.com/",
    "http://example.com@127.0.0.1/", "http://127.0.0.1/", "http://127.0.0.1:6379/",
    "http://127.255.255.254/", "http://localhost/", "http://LOCALHOST./", "http://a.localhost/",
    "http://0/", "http://0.0.0.0/", "http://2130706433/", "http://0x7f000001/",
    "http://0x7f.0.0.1/", "http://0177.0.0.1/", "http://017700000001/", "http://127.1/",
    "http://127.0.1/", "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/",
    "http://192.168.0.1./", "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials", "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata/",
    "http://instance-data/latest/", "http://224.0.0.1/", "http://239.255.255.250:1900/",
    "http://255.255.255.255/", "http://240.0.0.1/", "http://198.18.0.1/", "http://[::1]/",
    "http://[::]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/", "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[fe80::1]/", "http://[fe80::1%25eth0]/", "http://[fc00::1]/", "http://[fd00:ec2::254]/",
    "http://[ff02::1]/", "http://[2002:7f00:1::]/", "http://[2002:a9fe:a9fe::]/",
    "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[::127.0.0.1]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "http://[fec0::1]/",
]


def test_at_least_forty_payloads() -> None:
    assert len(PAYLOADS) >= 40 and len(set(PAYLOADS)) == len(PAYLOADS)


@pytest.mark.parametrize("url", PAYLOADS)
async def test_every_payload_is_refused_with_a_reason(url: str) -> None:
    async with Fetcher(FetchSettings(attempts=1, timeout=5)) as f:
        with pytest.raises(FetchRefused) as info:
            await f.fetch(url)
    assert info.value.reason and info.value.url


def test_public_addresses_pass_and_allow_list_is_explicit() -> None:
    guard = SsrfGuard()
    assert guard.check_url("https://www.binance.com/en/support/announcement") is None
    assert guard.check_address("2606:4700::1111") is None
    assert guard.check_url("http://127.0.0.1:8080/") == "address 127.0.0.1 is loopback"
    local = SsrfGuard(GuardSettings(allow=("127.0.0.0/8",)))
    assert local.check_url("http://127.0.0.1:8080/") is None
    assert local.check_url("http://10.0.0.1/") == "address 10.0.0.1 is private"


class _FixedDns(AbstractResolver):
    """Stands in for DNS (no network here): every name resolves to one address."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [{"hostname": host, "host": self.address, "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_a_name_that_resolves_to_a_private_address() -> None:
    resolver = GuardedResolver(SsrfGuard(), _FixedDns("10.1.2.3"))
    with pytest.raises(OSError, match=r"rebind\.example resolves to a refused address"):
        await resolver.resolve("rebind.example", 80)
    ok = await GuardedResolver(SsrfGuard(), _FixedDns("93.184.215.14")).resolve("a.example", 80)
    assert ok[0]["host"] == "93.184.215.14"


def local(**kw: object) -> FetchSettings:
    return FetchSettings(guard=GuardSettings(allow=("127.0.0.0/8",)), **kw)  # type: ignore[arg-type]


async def test_feed_conditional_get(sites: list[Site]) -> None:
    site = sites[0]
    async with Fetcher(local()) as f:
        first = await f.fetch(f"{site.base}/feed.xml")
        second = await f.fetch(f"{site.base}/feed.xml")
    assert first.status == 200 and first.content_type == "application/rss+xml"
    assert "<rss" in first.text and not first.not_modified
    assert second.not_modified and second.status == 304 and second.text == ""
    assert site.conditional_hits == 1


async def test_robots_is_obeyed(sites: list[Site]) -> None:
    a, b, c = sites[0], sites[1], sites[2]
    b.robots, b.robots_status = None, 404  # no robots.txt: everything allowed
    c.robots, c.robots_status = None, 503  # robots.txt unreachable: nothing allowed
    async with Fetcher(local()) as f:
        with pytest.raises(FetchRefused, match=r"disallowed by robots\.txt"):
            await f.fetch(f"{a.base}/private/1")
        assert (await f.fetch(f"{a.base}/page/1")).status == 200
        assert (await f.fetch(f"{b.base}/private/1")).status == 200
        with pytest.raises(FetchRefused, match=r"robots\.txt"):
            await f.fetch(f"{c.base}/page/1")
    assert a.served == 1


async def test_redirects_are_followed_and_each_hop_checked(sites: list[Site]) -> None:
    a, b = sites[0], sites[1]
    async with Fetcher(local()) as f:
        got = await f.fetch(f"{a.base}/redirect?to={b.base}/page/2")
        assert got.final_url == f"{b.base}/page/2" and got.redirects == (f"{b.base}/page/2",)
    # A site allowed by the list redirects to one that is not: refused at that hop.
    only_a = FetchSettings(guard=GuardSettings(allow=(f"{a.host}/32",)))
    async with Fetcher(only_a) as f:
        with pytest.raises(FetchRefused, match=r"127\.0\.0\.2 is loopback"):
            await f.fetch(f"{a.base}/redirect?to={b.base}/page/2")
        with pytest.raises(FetchRefused, match=r"169\.254\.169\.254 is link-local"):
            await f.fetch(f"{a.base}/redirect?to=http://169.254.169.254/latest/")
        with pytest.raises(FetchRefused, match="scheme 'file'"):
            await f.fetch(f"{a.base}/redirect?to=file:///etc/passwd")
    assert b.served == 1


async def test_caps_and_content_types(sites: list[Site]) -> None:
    site = sites[0]
    async with Fetcher(local(max_body=1024 * 1024, max_decompressed=1024 * 1024)) as f:
        with pytest.raises(FetchError, match="decompressed body larger"):
            await f.fetch(f"{site.base}/bomb")
        with pytest.raises(FetchError, match=r"exceeds the cap|larger than"):
            await f.fetch(f"{site.base}/big")
        with pytest.raises(FetchRefused, match="content type 'image/png' is not text"):
            await f.fetch(f"{site.base}/image")
        api = await f.fetch(f"{site.base}/api/posts")
        assert api.content_type == "application/json" and '"posts"' in api.text
    async with Fetcher(local(timeout=0.5, attempts=1)) as f:
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"no complete answer within 0\.5s"):
            await f.fetch(f"{site.base}/slow")
        assert time.monotonic() - started < 5


async def test_per_host_limits_hold_under_load(sites: list[Site]) -> None:
    import asyncio

    for s in sites:
        s.delay = 0.02
    settings = local(per_host_concurrency=2, per_host_rate=25.0)
    async with Fetcher(settings) as f:
        await asyncio.gather(*(f.fetch(f"{s.base}/page/{n}") for s in sites[:2] for n in range(30)))
    for s in sites[:2]:
        assert s.served == 30 and s.max_in_flight <= 2
        gaps = [b - a for a, b in zip(s.starts, s.starts[1:], strict=False)]
        # Starts are paced at 1/25 s; the server sees them no closer than scheduling jitter.
        assert sum(gaps) >= (len(s.starts) - 1) / 25.0 * 0.9


async def test_ten_hosts_concurrently_within_limits(sites: list[Site]) -> None:
    """Many pages from ten hosts at once: each host's concurrency and rate hold.

    (The pages/s figure against a bare aiohttp loop is ``bench/bench_fetch.py``.)
    """
    import asyncio

    per_host = 60
    settings = local(per_host_concurrency=4, per_host_rate=100.0)
    async with Fetcher(settings) as f:
        for s in sites:  # robots.txt once per host
            await f.fetch(f"{s.base}/page/0")
        results = await asyncio.gather(
            *(f.fetch(f"{s.base}/page/{n}") for n in range(1, per_host + 1) for s in sites)
        )
    assert len(results) == per_host * len(sites)
    assert all(r.status == 200 and "<article>" in r.text for r in results)
    for s in sites:
        assert s.max_in_flight <= 4
        window = s.starts[-per_host:]
        assert (window[-1] - window[0]) >= (per_host - 1) / 100.0 * 0.9
