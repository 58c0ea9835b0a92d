"""A private 3-master Redis Cluster on loopback ports, for Cluster tests.

Three ``redis-server --cluster-enabled yes`` processes are joined with
``redis-cli --cluster create ... --cluster-yes`` (no replicas), and the
fixture waits until every node reports ``cluster_state:ok``.

Example (in a test)::

    with RedisClusterServers.launch() as cluster:
        settings = RedisSettings.from_dsn(cluster.url)   # redis+cluster://...
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.redis_server import free_port, wait_until_ready
from tests.servers import require_binary

__all__ = ["RedisClusterServers", "cluster_info"]

_BUS_OFFSET = 10000


def cluster_info(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> dict[str, str]:
    """``CLUSTER INFO`` of one node as a dict (empty when it does not answer)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            data = b""
            while not data.endswith(b"\r\n\r\n") and b"cluster_state" not in data[-400:]:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
                if data.startswith(b"$"):
                    header, _, body = data.partition(b"\r\n")
                    if len(body) >= int(header[1:]):
                        break
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


class RedisClusterServers:
    """Three cluster-enabled redis-server processes joined into one cluster.

    Args:
        directory: Working directory of the nodes.
        masters: Number of primaries (3 is the minimum Redis accepts).
    """

    def __init__(self, *, directory: Path, masters: int = 3) -> None:
        self.server_binary = require_binary("redis-server")
        self.cli_binary = require_binary("redis-cli")
        self.directory = directory
        self.ports: list[int] = []
        while len(self.ports) < masters:
            port = free_port(bus_offset=_BUS_OFFSET)
            if port not in self.ports:
                self.ports.append(port)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL listing every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, *, timeout: float = 20.0) -> None:
        """Start the nodes, create the cluster and wait until its state is ok."""
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            args = [
                self.server_binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--appendonly", "no",
                "--save", "",
                "--protected-mode", "no",
                "--daemonize", "no",
                "--logfile", "redis.log",
            ]  # fmt: skip
            process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.processes.append(process)
        for port, process in zip(self.ports, self.processes, strict=True):
            wait_until_ready(port, timeout=timeout, process=process)
        create = subprocess.run(
            [
                self.cli_binary,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if create.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {create.stdout!r} {create.stderr!r}"
            )
        deadline = time.monotonic() + timeout
        while True:
            infos = [cluster_info(port) for port in self.ports]
            if all(
                i.get("cluster_state") == "ok"
                and i.get("cluster_known_nodes") == str(len(self.ports))
                for i in infos
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok after {timeout}s: {infos}")
            time.sleep(0.05)

    def kill(self, port: int) -> None:
        """SIGKILL the node listening on ``port`` (the others keep running)."""
        process = self.processes[self.ports.index(port)]
        process.kill()
        process.wait()

    def stop(self) -> None:
        """Stop every node."""
        processes, self.processes = self.processes, []
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @classmethod
    @contextmanager
    def launch(cls, *, masters: int = 3) -> Iterator[RedisClusterServers]:
        """Start a cluster in a fresh temporary directory; tear it down after."""
        directory = Path(tempfile.mkdtemp(prefix="swarm-cluster-"))
        cluster = cls(directory=directory, masters=masters)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(directory, ignore_errors=True)
