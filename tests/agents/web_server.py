"""A local aiohttp site for the fetching tests: feeds, pages, robots, redirects, bombs.

Each :class:`Site` binds its own loopback address (``127.0.0.N``), so ten
sites are ten hosts. The site counts what it served and watches how many
requests it had in flight at once, so tests can assert the client's
per-host limits from the server's side.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web

DATA = Path(__file__).resolve().parents[2] / "agents" / "data" / "tge_excerpts.jsonl"


@functools.cache
def _rows() -> tuple[dict[str, object], ...]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line)


def real_excerpts(limit: int = 20) -> list[dict[str, object]]:
    """Real excerpts (with their source URLs) to serve as feed items and pages."""
    return list(_rows()[:limit])


def rss(items: list[dict[str, object]]) -> str:
    entries = "".join(
        f"<item><title>{escape(str(r.get('title') or r['id']))}</title>"
        f"<link>{escape(str(r['url']))}</link><guid>{escape(str(r['id']))}</guid>"
        f"<description>{escape(str(r['text']))}</description></item>"
        for r in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>excerpts</title><link>http://example.org/</link>{entries}</channel></rss>"
    )


def page(r: dict[str, object]) -> str:
    return (
        f"<html><head><title>{escape(str(r.get('title') or r['id']))}</title></head><body>"
        "<nav>Home | Markets | Login</nav>"
        f"<article><h1>{escape(str(r.get('title') or ''))}</h1><p>{escape(str(r['text']))}</p>"
        "</article><footer>Subscribe to our newsletter</footer></body></html>"
    )


@dataclass
class Site:
    """One host: its address, counters and limits observed."""

    host: str
    port: int = 0
    robots: str | None = "User-agent: *\nDisallow: /private\n"
    robots_status: int = 200
    served: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    starts: list[float] = field(default_factory=list)
    conditional_hits: int = 0
    delay: float = 0.0
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/feed.xml", self._feed)
        app.router.add_get("/page/{n}", self._page)
        app.router.add_get("/private/{n}", self._page)
        app.router.add_get("/api/posts", self._api)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/bomb", self._bomb)
        app.router.add_get("/big", self._big)
        app.router.add_get("/image", self._image)
        app.router.add_get("/slow", self._slow)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            [address] = self._runner.addresses
            self.port = int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _enter(self) -> None:
        self.served += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.starts.append(time.monotonic())

    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots is None:
            return web.Response(status=self.robots_status)
        return web.Response(text=self.robots, status=self.robots_status)

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        self._enter()
        try:
            etag = '"excerpts-v1"'
            modified = formatdate(1_700_000_000, usegmt=True)
            if request.headers.get("If-None-Match") == etag or (
                request.headers.get("If-Modified-Since") == modified
            ):
                self.conditional_hits += 1
                return web.Response(status=304, headers={"ETag": etag})
            return web.Response(
                text=rss(real_excerpts()), content_type="application/rss+xml",
                headers={"ETag": etag, "Last-Modified": modified},
            )
        finally:
            self.in_flight -= 1

    async def _page(self, request: web.Request) -> web.Response:
        self._enter()
        try:
            if self.delay:
                await asyncio.sleep(self.delay)  # a slow server, for the limits to bite
            rows = real_excerpts(50)
            r = rows[int(request.match_info["n"]) % len(rows)]
            return web.Response(text=page(r), content_type="text/html")
        finally:
            self.in_flight -= 1

    async def _api(self, request: web.Request) -> web.Response:
        self._enter()
        try:
            return web.json_response({"posts": real_excerpts(5)})
        finally:
            self.in_flight -= 1

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _bomb(self, request: web.Request) -> web.Response:
        body = gzip.compress(b"<html>" + b" " * (50 * 1024 * 1024) + b"</html>")
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/html"}
        )

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(text="x" * (3 * 1024 * 1024), content_type="text/plain")

    async def _image(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n", content_type="image/png")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")
