"""Crash test: PostgreSQL killed (``pg_ctl stop -m immediate``) during a stream of stores.

The test runs its own PostgreSQL (initdb into a temporary directory, as the
``postgres`` user when we are root, on a spare loopback port); the shared
server is never touched. After a restart, every store that returned an id
must have its row; every store that raised must not have claimed success.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from memory import MemoryCoordinator, MemorySettings, PostgresSettings
from swarm.errors import MemoryUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_BIN_DIRS = ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]


def _binary(name: str) -> str | None:
    for d in _BIN_DIRS:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnPostgres:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self.initdb = initdb
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="memcrash-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def _run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.as_user, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.decode(errors='replace')}")

    async def init(self) -> None:
        await self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "--no-sync", "-E", "UTF8")

    async def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        await self._run(self.pg_ctl, "-D", str(self.data), "-o", opts, "-l",
                        str(self.dir / "log"), "-w", "-t", "30", "start")

    async def crash(self) -> None:
        await self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    async def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            await self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb/pg_ctl not found")
        pytest.skip("initdb/pg_ctl not found")
    pg = OwnPostgres(initdb, pg_ctl)
    try:
        await pg.init()
        await pg.start()
        yield pg
    finally:
        try:
            await pg.stop()
        finally:
            pg.remove()


async def test_stores_that_returned_survive_an_immediate_stop(own_postgres: OwnPostgres) -> None:
    settings = MemorySettings(
        synthesis_interval=None, tiering_interval=None,
        postgres=PostgresSettings.from_dsn(
            own_postgres.dsn, schema="crash", batch_max=50, command_timeout=5.0
        ),
    )
    succeeded: list[str] = []
    failed: list[BaseException] = []
    enough = asyncio.Event()
    stop_producers = asyncio.Event()

    async def producer(n: int) -> None:
        i = 0
        while not stop_producers.is_set():
            i += 1
            try:
                succeeded.append(await mem.store(namespace="crash", content=f"p{n} item {i}"))
            except MemoryUnavailable as exc:
                failed.append(exc)
                if len(failed) >= 40:
                    stop_producers.set()
                # Keep the stream going against a dead server, without spinning.
                await asyncio.sleep(0.01)
            if len(succeeded) >= 300:
                enough.set()

    mem = MemoryCoordinator(settings=settings)
    await mem.start()
    started = time.monotonic()
    try:
        async with asyncio.timeout(25), asyncio.TaskGroup() as tg:
            for n in range(8):
                tg.create_task(producer(n))
            await enough.wait()
            await own_postgres.crash()
    finally:
        await mem.close()
    crashed_after = len(succeeded)
    assert failed, "the crash must make stores raise, not pretend"
    assert all(isinstance(e, MemoryUnavailable) for e in failed)

    await own_postgres.start()
    conn = await asyncpg.connect(own_postgres.dsn)
    try:
        rows = await conn.fetch("SELECT id FROM crash.memories")
    finally:
        await conn.close()
    stored = {r["id"] for r in rows}
    missing = set(succeeded) - stored
    assert not missing, f"{len(missing)} acknowledged stores lost"
    # Rows beyond the acknowledged ones are stores whose commit reply was lost in the
    # crash: they raised (did not claim success), which is the honest outcome.
    assert len(stored) - len(succeeded) <= len(failed)
    print(
        f"crash test: {crashed_after} acknowledged, {len(failed)} raised, "
        f"{len(stored) - len(succeeded)} committed-but-unacknowledged, "
        f"{time.monotonic() - started:.1f}s"
    )
