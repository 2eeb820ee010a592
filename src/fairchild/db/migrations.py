"""Numbered SQL migrations (``migrations/NNNN_name.sql``), applied under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import asyncpg

from . import queries as q

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ADVISORY_LOCK_KEY = 0x46414952_4348  # "FAIRCH": serialises concurrent install/migrate runs
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def all_migrations() -> tuple[Migration, ...]:
    """Every migration shipped with the package, in version order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration numbers must run 1..N without gaps, found {versions}")
    return tuple(found)


async def migrate(pool: asyncpg.Pool, target: int | None = None) -> list[Migration]:
    """Apply every pending migration up to `target` in one transaction; return those applied.

    The transaction takes an advisory lock first, so two processes migrating at once
    serialise and the second finds nothing left to do. Idempotent.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(q.MIGRATION_LOCK, ADVISORY_LOCK_KEY)
        await conn.execute(q.MIGRATIONS_TABLE)
        done = {r["version"] for r in await conn.fetch(q.APPLIED_MIGRATIONS)}
        applied = []
        for migration in all_migrations():
            if migration.version in done or (target is not None and migration.version > target):
                continue
            await conn.execute(migration.sql)
            await conn.execute(q.RECORD_MIGRATION, migration.version, migration.name)
            applied.append(migration)
        return applied


async def applied_versions(pool: asyncpg.Pool) -> list[int]:
    """Versions recorded in `fairchild_migrations` (empty before install)."""
    async with pool.acquire() as conn:
        exists = await conn.fetchval("SELECT to_regclass('fairchild_migrations') IS NOT NULL")
        if not exists:
            return []
        return [r["version"] for r in await conn.fetch(q.APPLIED_MIGRATIONS)]
