"""Versioned SQL migrations shipped in ``memory/migrations/NNN_name.sql``.

They are applied on start in one transaction holding an advisory lock, so
concurrent starters wait for each other and a second run is a no-op.

Example:
    >>> from memory.schema import load_migrations
    >>> [m.version for m in load_migrations()][:2]
    [1, 2]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["Migration", "apply_migrations", "load_migrations"]

_NAME = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")
# Arbitrary constant namespacing our advisory locks from other users of the database.
_LOCK_CLASS = 0x5157_4D45


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned SQL script."""

    version: int
    name: str
    sql: str


def load_migrations(package: str = "memory") -> list[Migration]:
    """The migrations shipped in ``<package>/migrations``, by version.

    The memory tier's are the default; the task history
    (:mod:`swarm.history`) ships its own in ``swarm.history``.
    """
    out = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            out.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    out.sort(key=lambda m: m.version)
    if len({m.version for m in out}) != len(out):
        raise RuntimeError("two migrations share a version number")
    return out


async def apply_migrations(conn: Any, schema: str, package: str = "memory") -> list[int]:
    """Apply ``package``'s missing migrations to ``schema``; returns the versions applied now.

    Each package counts its versions in a table of its own (``schema_migrations``
    for the memory tier, ``<package>_migrations`` for others, e.g.
    ``swarm_history_migrations``), so two packages may share one schema.

    ``schema`` must already be a validated identifier (see ``PostgresSettings``).
    """
    table = "schema_migrations" if package == "memory" else (
        package.replace(".", "_") + "_migrations"
    )
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, schema
        )
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {table}")}
        for migration in load_migrations(package):
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {table} (version, name) VALUES ($1, $2)",
                migration.version, migration.name,
            )
            applied_now.append(migration.version)
    return applied_now
