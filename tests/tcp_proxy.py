"""A loopback TCP proxy that a test can black-hole, to simulate half-open connections.

:meth:`TcpProxy.blackhole` silently stops forwarding in both directions on the
connections open at that moment, without closing anything: both peers still
see an established connection, writes still succeed, and nothing ever
arrives, as when a NAT or firewall drops a connection's state. New
connections are forwarded normally unless ``include_new=True``.
:meth:`TcpProxy.heal` resumes forwarding everywhere.

Example:
    >>> import asyncio
    >>> async def demo():
    ...     async def echo(reader, writer):
    ...         writer.write(await reader.read(100)); await writer.drain(); writer.close()
    ...     server = await asyncio.start_server(echo, "127.0.0.1", 0)
    ...     port = server.sockets[0].getsockname()[1]
    ...     async with TcpProxy("127.0.0.1", port) as proxy:
    ...         reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    ...         writer.write(b"hi"); data = await reader.read(100); writer.close()
    ...     server.close(); await server.wait_closed()
    ...     return data
    >>> asyncio.run(demo())
    b'hi'
"""

from __future__ import annotations

import asyncio
import contextlib

from swarm.tasks import TaskSet

__all__ = ["TcpProxy"]


class _Link:
    """One proxied connection: a client side and an upstream side."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``host:port`` until black-holed.

    Args:
        host: Upstream host.
        port: Upstream port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks = TaskSet("tcp-proxy")
        self._new_flowing = asyncio.Event()
        self._new_flowing.set()

    @property
    def links(self) -> int:
        """Connections currently open through the proxy."""
        return len(self._links)

    async def start(self) -> None:
        """Listen on a free loopback port (see :attr:`port`)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and close every proxied connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.close()
        await self._tasks.close()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def blackhole(self, *, include_new: bool = False) -> None:
        """Silently stop forwarding on every open connection (and new ones when asked)."""
        for link in self._links:
            link.flowing.clear()
        if include_new:
            self._new_flowing.clear()

    def heal(self) -> None:
        """Forward again on every connection."""
        self._new_flowing.set()
        for link in self._links:
            link.flowing.set()

    def drop_all(self) -> None:
        """Close every proxied connection (an abrupt, visible disconnect)."""
        for link in list(self._links):
            link.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link()
        if not self._new_flowing.is_set():
            link.flowing.clear()
        link.writers.append(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._links.discard(link)
            writer.close()
            return
        link.writers.append(up_writer)
        self._tasks.spawn(self._pump(reader, up_writer, link), name="up")
        self._tasks.spawn(self._pump(up_reader, writer, link), name="down")

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                await link.flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                # Bytes read just before a black-hole are held, not forwarded.
                await link.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._links.discard(link)
            link.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
