"""The cold tier: gzip-compressed JSON Lines segment files on local disk.

Each archiving pass writes one new segment (``seg-<first id>-<n>.jsonl.gz``)
through a temporary file and an atomic rename, so a crash never leaves a
half-written segment in place. File I/O runs in worker threads, never on the
event loop. A small in-memory map from id to segment is rebuilt on start.

Example:
    >>> import asyncio, tempfile
    >>> from memory.records import Memory
    >>> async def demo(d):
    ...     cold = ArchiveTier(directory=d)
    ...     await cold.start()
    ...     await cold.archive([Memory(id="a", namespace="n", content="old")])
    ...     return (await cold.get("a")).content
    >>> with tempfile.TemporaryDirectory() as d:
    ...     asyncio.run(demo(d))
    'old'
"""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from memory.records import Memory

__all__ = ["ArchiveTier", "read_segment"]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Memory)


def read_segment(path: Path) -> Iterator[Memory]:
    """Memories of one segment file (blocking; call from a thread)."""
    with gzip.open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield _decoder.decode(line)


def _write_segment(path: Path, memories: Sequence[Memory]) -> None:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        for memory in memories:
            f.write(_encoder.encode(memory) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ArchiveTier:
    """Compressed JSONL archive of memories that aged out of the warm tier.

    Args:
        directory: Where segment files live (created on start).
    """

    durable = True

    def __init__(self, *, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._where: dict[str, Path] = {}
        self._seq = 0
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def segments(self) -> list[Path]:
        """Segment files, oldest first."""
        return sorted(self.directory.glob("seg-*.jsonl.gz"))

    async def start(self) -> None:
        """Create the directory and index the existing segments."""

        def scan() -> dict[str, Path]:
            self.directory.mkdir(parents=True, exist_ok=True)
            where: dict[str, Path] = {}
            for path in self.segments():
                for memory in read_segment(path):
                    where[memory.id] = path
            return where

        self._where = await asyncio.to_thread(scan)
        self._seq = len(self.segments())

    async def archive(self, memories: Sequence[Memory]) -> Path | None:
        """Write memories to a new segment; returns its path (None when empty)."""
        if not memories:
            return None
        async with self._lock:
            self._seq += 1
            path = self.directory / f"seg-{memories[0].id}-{self._seq:06d}.jsonl.gz"
            await asyncio.to_thread(_write_segment, path, list(memories))
            for memory in memories:
                self._where[memory.id] = path
        return path

    async def get(self, memory_id: str) -> Memory | None:
        """Read one archived memory (decompresses its segment)."""
        path = self._where.get(memory_id)
        if path is None:
            return None

        def find() -> Memory | None:
            for memory in read_segment(path):
                if memory.id == memory_id:
                    return memory
            return None

        return await asyncio.to_thread(find)

    async def delete(self, memory_id: str) -> bool:
        """Remove a memory from the archive (rewrites its segment)."""
        async with self._lock:
            path = self._where.pop(memory_id, None)
            if path is None:
                return False

            def rewrite() -> None:
                kept = [m for m in read_segment(path) if m.id != memory_id]
                if kept:
                    _write_segment(path, kept)
                else:
                    path.unlink()

            await asyncio.to_thread(rewrite)
            return True

    async def all(self) -> list[Memory]:
        """Every archived memory (the latest copy of each id)."""

        def load() -> list[Memory]:
            out: dict[str, Memory] = {}
            for path in self.segments():
                for memory in read_segment(path):
                    if self._where.get(memory.id) == path:
                        out[memory.id] = memory
            return sorted(out.values(), key=lambda m: m.id)

        return await asyncio.to_thread(load)
