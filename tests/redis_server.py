"""A private ``redis-server`` for tests that restart or break the server.

It runs on a free loopback port in a temporary directory with AOF on (so a
restart keeps every acknowledged write) and RDB snapshots off.

Example (in a test)::

    with RedisServer.launch() as server:
        url = server.url            # redis://127.0.0.1:<port>/0
        await server.arestart()     # same port, same data
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.servers import require_binary

__all__ = ["RedisServer", "free_port", "ping", "wait_until_ready"]


def free_port(*, bus_offset: int | None = None) -> int:
    """A currently free loopback TCP port.

    Args:
        bus_offset: Also require ``port + bus_offset`` to be free (Redis
            Cluster's bus port is ``port + 10000``).
    """
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if bus_offset is None:
            return port
        if port + bus_offset < 65536 and _free(port + bus_offset):
            return port
    raise RuntimeError("no free port pair found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING with PONG (not LOADING) on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def wait_until_ready(
    port: int, *, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll PING until the server answers, its process died, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {process.returncode}")
        if ping(port):
            return
        time.sleep(0.02)
    raise TimeoutError(f"redis-server on port {port} not ready after {timeout}s")


class RedisServer:
    """One private redis-server process with AOF persistence.

    Args:
        directory: Working directory (AOF files, log).
        port: Port to listen on (a free one by default).
        extra_args: More ``redis-server`` arguments, e.g. ``("--maxmemory", "64mb")``.
    """

    def __init__(
        self, *, directory: Path, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = require_binary("redis-server")
        self.directory = directory
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        """``redis://`` URL of the server (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, *, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING (after loading its AOF)."""
        if self.running:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", "redis.log",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_ready(self.port, timeout=timeout, process=self.process)
        except Exception:
            self.stop()
            raise

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM: it flushes the AOF), killing it if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown work; AOF holds what was fsynced/written)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, *, timeout: float = 10.0) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start(timeout=timeout)
        self.restarts += 1

    async def astart(self) -> None:
        """:meth:`start` without blocking the event loop."""
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        """:meth:`restart` without blocking the event loop."""
        await asyncio.to_thread(self.restart)

    def log(self) -> str:
        """The server's log, for failure messages."""
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @classmethod
    @contextmanager
    def launch(cls, *, extra_args: Sequence[str] = ()) -> Iterator[RedisServer]:
        """Start a server in a fresh temporary directory; stop it and delete the directory after."""
        directory = Path(tempfile.mkdtemp(prefix="swarm-redis-"))
        server = cls(directory=directory, extra_args=extra_args)
        try:
            for attempt in range(3):
                try:
                    server.start()
                    break
                except RuntimeError:
                    # The free port was taken between choosing and binding it.
                    if attempt == 2:
                        raise
                    server.port = free_port()
            yield server
        finally:
            server.stop()
            shutil.rmtree(directory, ignore_errors=True)
