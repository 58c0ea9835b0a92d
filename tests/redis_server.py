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
from dataclasses import dataclass
from pathlib import Path

from tests.servers import require_binary

__all__ = ["RedisServer", "TlsFiles", "free_port", "make_tls_files", "ping", "wait_until_ready"]


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


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a test CA and certificates (EC P-256, valid one day) with ``openssl``."""
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca_key = directory / "ca.key"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    run("req", "-x509", *newkey, "-keyout", str(ca_key), "-out", str(files.ca),
        "-days", "1", "-subj", "/CN=swarm-test-ca")  # fmt: skip
    for cert, key, name, extra in (
        (files.server_cert, files.server_key, "127.0.0.1", ["-extfile", str(ext)]),
        (files.client_cert, files.client_key, "swarm-test-client", []),
    ):
        csr = cert.with_suffix(".csr")
        run("req", *newkey, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        run("x509", "-req", "-in", str(csr), "-CA", str(files.ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "1", *extra)  # fmt: skip
    return files


class RedisServer:
    """One private redis-server process with AOF persistence.

    Args:
        directory: Working directory (AOF files, log).
        port: Port to listen on (a free one by default).
        extra_args: More ``redis-server`` arguments, e.g. ``("--maxmemory", "64mb")``.
        tls: Also listen for TLS on :attr:`tls_port` with these certificates
            (client certificates optional).
    """

    def __init__(
        self,
        *,
        directory: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = require_binary("redis-server")
        self.directory = directory
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.tls = tls
        self.tls_port = free_port() if tls is not None else 0
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        """``redis://`` URL of the server (database 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """``rediss://`` URL of the TLS port (database 0), without TLS options."""
        return f"rediss://127.0.0.1:{self.tls_port}/0"

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
        if self.tls is not None:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(self.tls.server_cert),
                "--tls-key-file", str(self.tls.server_key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-auth-clients", "optional",
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
    def launch(cls, *, extra_args: Sequence[str] = (), tls: bool = False) -> Iterator[RedisServer]:
        """Start a server in a fresh temporary directory; stop it and delete the directory after.

        Args:
            extra_args: More ``redis-server`` arguments.
            tls: Also listen for TLS, with certificates made by :func:`make_tls_files`.
        """
        directory = Path(tempfile.mkdtemp(prefix="swarm-redis-"))
        files = make_tls_files(directory / "tls") if tls else None
        server = cls(directory=directory, extra_args=extra_args, tls=files)
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
