"""Backup and restore: every memory (warm and cold) in one portable gzip JSON Lines file.

The first line is a header naming the format and version; each further line
is one memory, vector included (base64), so a restore needs no re-embedding.
The format leaves room for more sections (the task ledger) in a later version.

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

if TYPE_CHECKING:
    from memory.coordinator import MemoryCoordinator

__all__ = ["BACKUP_FORMAT", "BackupHeader", "BackupReport", "export_memories", "import_memories"]

BACKUP_FORMAT = "queenswarm.backup"
_VERSION = 1
_CHUNK = 2000


class BackupHeader(msgspec.Struct, frozen=True, kw_only=True):
    """First line of a backup file.

    Attributes:
        format: Always ``queenswarm.backup``.
        version: Format version.
        created_at: Unix time of the export.
        sections: What follows, in order (``memories`` for now).
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
        size: File size in bytes.
        seconds: Wall time taken.
    """

    count: int
    added: int = 0
    size: int = 0
    seconds: float = 0.0


_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(BackupHeader)
_memory_decoder = msgspec.json.Decoder(Memory)


async def export_memories(
    coordinator: MemoryCoordinator, path: str | os.PathLike[str]
) -> BackupReport:
    """Write every memory of the coordinator's warm and cold tiers to ``path``.

    The file is written to a temporary name and renamed, so a crash never
    leaves a truncated backup under the final name.
    """
    started = time.perf_counter()
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    f = await asyncio.to_thread(gzip.open, tmp, "wb", 6)
    count = 0
    try:
        header = BackupHeader(created_at=time.time())
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
    finally:
        await asyncio.to_thread(f.close)
    await asyncio.to_thread(os.replace, tmp, target)
    size = (await asyncio.to_thread(target.stat)).st_size
    return BackupReport(count=count, size=size, seconds=time.perf_counter() - started)


def _lines(memories: list[Memory]) -> bytes:
    return b"".join(_encoder.encode(m) + b"\n" for m in memories)


def _check(memory: Memory, max_bytes: int) -> Memory:
    validate_namespace(memory.namespace)
    validate_content(memory.content, max_bytes)
    validate_confidence(memory.confidence)
    validate_tags(memory.tags)
    return memory


def _read(path: Path, max_bytes: int) -> list[Memory]:
    with gzip.open(path, "rb") as f:
        try:
            header = _header_decoder.decode(f.readline())
        except msgspec.DecodeError as exc:
            raise MemoryValidationError(f"{path} is not a queenswarm backup: {exc}") from None
        if header.format != BACKUP_FORMAT or header.version > _VERSION:
            raise MemoryValidationError(
                f"{path}: unsupported backup {header.format!r} version {header.version}"
            )
        out = []
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                out.append(_check(_memory_decoder.decode(line), max_bytes))
            except (msgspec.DecodeError, MemoryValidationError) as exc:
                raise MemoryValidationError(f"{path}:{n}: bad memory: {exc}") from None
        return out


async def import_memories(
    coordinator: MemoryCoordinator, path: str | os.PathLike[str]
) -> BackupReport:
    """Load a backup into the coordinator's warm tier and recall index.

    The whole file is validated before anything is written, so a corrupt
    backup changes nothing. Memories already present (same id) are kept.

    Raises:
        MemoryValidationError: The file is not a valid backup.
        MemoryUnavailable: The warm tier did not commit.
    """
    started = time.perf_counter()
    target = Path(path)
    memories = await asyncio.to_thread(_read, target, coordinator.settings.max_content_bytes)
    added = 0
    for i in range(0, len(memories), _CHUNK):
        chunk = memories[i : i + _CHUNK]
        added += await coordinator.warm.put_many(chunk)
        for memory in chunk:
            if memory.id not in coordinator.index:
                coordinator._index(memory)
    size = (await asyncio.to_thread(target.stat)).st_size
    return BackupReport(
        count=len(memories), added=added, size=size, seconds=time.perf_counter() - started
    )
