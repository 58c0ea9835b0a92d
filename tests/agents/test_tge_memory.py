"""The TGE job remembers its findings: a later run (or another Queen) reports updates."""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from agents import default_swarm
from agents.corpus import load_input
from agents.job import JobReport, run_tge_job
from agents.quality import NAMESPACE
from agents.report import render_text
from memory import MemoryCoordinator, MemoryFilter, MemorySettings, PostgresSettings
from swarm import Swarm
from swarm.inprocess import InProcessRuntime
from tests.servers import require_postgres


def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": "n1", "title": "Binance Will List Lombard (BARD) with Seed Tag Applied", '
        '"body": "Binance will list BARD and open trading at 2025-09-18 14:00 (UTC).", '
        '"url": "https://example.org/n1", "source": "notices"}\n'
        '{"id": "n2", "text": "Bitcoin holds above $75k as inflows slow."}\n',
        encoding="utf-8",
    )
    return path


async def run_once(memory: MemoryCoordinator, path: Path) -> JobReport:
    runtime = InProcessRuntime(memory=memory)
    async with Swarm(agents=default_swarm(), runtime=runtime) as swarm:
        return await run_tge_job(swarm, corpus=load_input(path), task_timeout=20)


async def test_second_run_reports_an_update_and_says_so(tmp_path: Path) -> None:
    path = corpus_file(tmp_path)
    async with MemoryCoordinator(settings=MemorySettings(synthesis_interval=None)) as memory:
        first = await run_once(memory, path)
        second = await run_once(memory, path)  # another Queen sharing the memory
        stored = await memory.recall(
            "Lombard BARD", k=5, filters=MemoryFilter(namespaces=(NAMESPACE,))
        )
    [a1] = first.announcements
    [a2] = second.announcements
    assert (a1.status, a2.status) == ("new", "update") and a2.first_reported
    assert first.from_memory == []
    assert second.from_memory == [f"ticker:BARD (first reported {a2.first_reported})"]
    assert "From memory: 1 already reported (updates), 0 new" in render_text(second)
    assert len(stored) == 2
    m = stored[0].memory
    assert m.namespace == NAMESPACE and m.task_id and m.author.startswith("data_quality")
    assert "n1" in m.content and "notices" in m.content and "BARD" in m.content


@pytest.mark.integration
async def test_a_later_process_recognises_it_through_postgresql(tmp_path: Path) -> None:
    dsn = require_postgres()
    schema = f"tgetest_{secrets.token_hex(5)}"
    settings = MemorySettings(
        postgres=PostgresSettings.from_dsn(dsn, schema=schema), synthesis_interval=None
    )
    path = corpus_file(tmp_path)
    try:
        async with MemoryCoordinator(settings=settings) as memory:
            first = await run_once(memory, path)
        # A new coordinator: nothing in process memory, only what PostgreSQL kept.
        async with MemoryCoordinator(settings=settings) as memory:
            second = await run_once(memory, path)
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    assert [a.status for a in first.announcements] == ["new"]
    assert [a.status for a in second.announcements] == ["update"]
