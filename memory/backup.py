"""Backup and restore: every memory (warm and cold) in one portable gzip JSON Lines file.

The first line is a header naming the format, its version and its sections;
each further line is one memory, vector included (base64), so a restore needs
no re-embedding. Given the task history (:class:`swarm.history.PostgresHistory`),
version 2 adds a ``tasks`` section after the memories: a ``{"section":
"tasks"}`` line, then one finished task record per line (the ledger's history;
live tasks are in Redis and are not backed up). Version 1 files still load.

Example:
    >>> import asyncio, tempfile, os
    >>> from memory.coordinator import MemoryCoordinator
    >>> async def demo(path):
    ...     async with MemoryCoordinator() as a:
    ...         await a.store(namespace="n", content="kept across restore")
    ...         await export_memories(a, path)
    ...     async with MemoryCoordinator() as b:
    ...         report = await import_memories(b, path)
    ...         return report.added, len(b.index)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     asyncio.run(demo(os.path.join(d, "backup.jsonl.gz")))
    (1, 1)
"""

from __future__ import annotations

import asyncio
import gzip
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from memory.records import (
    Memory,
    validate_confidence,
    validate_content,
    validate_namespace,
    validate_tags,
)
from swarm.errors import MemoryValidationError
from swarm.ledger import TaskRecord

if TYPE_CHECKING:
    from memory.coordinator import MemoryCoordinator
    from swarm.history.store import PostgresHistory

__all__ = ["BACKUP_FORMAT", "BackupHeader", "BackupReport", "export_memories", "import_memories"]

BACKUP_FORMAT = "queenswarm.backup"
_VERSION = 2
_TASKS_MARK = b'{"section":"tasks"}'
_CHUNK = 2000


class BackupHeader(msgspec.Struct, frozen=True, kw_only=True):
    """First line of a backup file.

    Attributes:
        format: Always ``queenswarm.backup``.
        version: Format version.
        created_at: Unix time of the export.
        sections: What follows, in order: ``memories``, then ``tasks`` if present.
    """

    format: str = BACKUP_FORMAT
    version: int = _VERSION
    created_at: float = 0.0
    sections: tuple[str, ...] = ("memories",)


class BackupReport(msgspec.Struct, frozen=True, kw_only=True):
    """Outcome of an export or import.

    Attributes:
        count: Memories written or read.
        added: Memories that were new to the target (import only).
        tasks: Finished task records written or read (the task history).
        size: File size in bytes.
        seconds: Wall time taken.
    """

    count: int
    added: int = 0
    tasks: int = 0
    size: int = 0
    seconds: float = 0.0


_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(BackupHeader)
_memory_decoder = msgspec.json.Decoder(Memory)
_task_decoder = msgspec.json.Decoder(TaskRecord)


async def export_memories(
    coordinator: MemoryCoordinator,
    path: str | os.PathLike[str],
    *,
    history: PostgresHistory | None = None,
) -> BackupReport:
    """Write every memory of the coordinator's warm and cold tiers to ``path``.

    With ``history``, every finished task of the task history follows (the
    ``tasks`` section). The file is written to a temporary name and renamed,
    so a crash never leaves a truncated backup under the final name.
    """
    started = time.perf_counter()
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    f = await asyncio.to_thread(gzip.open, tmp, "wb", 6)
    count = tasks = 0
    try:
        sections = ("memories", "tasks") if history is not None else ("memories",)
        header = BackupHeader(created_at=time.time(), sections=sections)
        await asyncio.to_thread(f.write, _encoder.encode(header) + b"\n")
        seen: set[str] = set()
        after: str | None = None
        while page := await coordinator.warm.scan(after=after, limit=_CHUNK):
            await asyncio.to_thread(f.write, _lines(page))
            seen.update(m.id for m in page)
            count += len(page)
            after = page[-1].id
        if coordinator.archive is not None:
            cold = [m for m in await coordinator.archive.all() if m.id not in seen]
            for i in range(0, len(cold), _CHUNK):
                chunk = cold[i : i + _CHUNK]
                await asyncio.to_thread(f.write, _lines(chunk))
            count += len(cold)
        if history is not None:
            await asyncio.to_thread(f.write, _TASKS_MARK + b"\n")
            async for records in history.export(chunk=_CHUNK):
                await asyncio.to_thread(f.write, _lines(records))
                tasks += len(records)
    finally:
        await asyncio.to_thread(f.close)
    await asyncio.to_thread(os.replace, tmp, target)
    size = (await asyncio.to_thread(target.stat)).st_size
    return BackupReport(
        count=count, tasks=tasks, size=size, seconds=time.perf_counter() - started
    )


def _lines(items: list[Memory] | list[TaskRecord]) -> bytes:
    return b"".join(_encoder.encode(m) + b"\n" for m in items)


def _check(memory: Memory, max_bytes: int) -> Memory:
    validate_namespace(memory.namespace)
    validate_content(memory.content, max_bytes)
    validate_confidence(memory.confidence)
    validate_tags(memory.tags)
    return memory


def _read(path: Path, max_bytes: int) -> tuple[list[Memory], list[TaskRecord]]:
    with gzip.open(path, "rb") as f:
        try:
            header = _header_decoder.decode(f.readline())
        except msgspec.DecodeError as exc:
            raise MemoryValidationError(f"{path} is not a queenswarm backup: {exc}") from None
        if header.format != BACKUP_FORMAT or header.version > _VERSION:
            raise MemoryValidationError(
                f"{path}: unsupported backup {header.format!r} version {header.version}"
            )
        out: list[Memory] = []
        tasks: list[TaskRecord] = []
        in_tasks = False
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            if line.strip() == _TASKS_MARK:
                in_tasks = True
                continue
            try:
                if in_tasks:
                    task = _task_decoder.decode(line)
                    if not task.final:
                        raise MemoryValidationError(f"task {task.task_id} is not finished")
                    tasks.append(task)
                else:
                    out.append(_check(_memory_decoder.decode(line), max_bytes))
            except (msgspec.DecodeError, MemoryValidationError) as exc:
                what = "task record" if in_tasks else "memory"
                raise MemoryValidationError(f"{path}:{n}: bad {what}: {exc}") from None
        return out, tasks


async def import_memories(
    coordinator: MemoryCoordinator,
    path: str | os.PathLike[str],
    *,
    history: PostgresHistory | None = None,
) -> BackupReport:
    """Load a backup into the coordinator's warm tier and recall index.

    With ``history``, the backup's finished tasks go to the task history
    (a task it holds already keeps its latest finish); without, they are
    left out. The whole file is validated before anything is written, so a
    corrupt backup changes nothing. Memories already present (same id) are kept.

    Raises:
        MemoryValidationError: The file is not a valid backup.
        MemoryUnavailable: The warm tier did not commit.
        HistoryUnavailable: The task history did not commit.
    """
    started = time.perf_counter()
    target = Path(path)
    memories, tasks = await asyncio.to_thread(
        _read, target, coordinator.settings.max_content_bytes
    )
    added = 0
    for i in range(0, len(memories), _CHUNK):
        chunk = memories[i : i + _CHUNK]
        added += await coordinator.warm.put_many(chunk)
        for memory in chunk:
            if memory.id not in coordinator.index:
                coordinator._index(memory)
    if history is not None:
        for i in range(0, len(tasks), _CHUNK):
            await history.write(tasks[i : i + _CHUNK])
    size = (await asyncio.to_thread(target.stat)).st_size
    return BackupReport(
        count=len(memories),
        added=added,
        tasks=len(tasks) if history is not None else 0,
        size=size,
        seconds=time.perf_counter() - started,
    )
