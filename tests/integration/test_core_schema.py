"""install/migrate: idempotent, safe concurrently, and a fresh install equals every
migration applied one step at a time."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
import trio
from trio_asyncio import aio_as_trio

from fairchild import Fairchild
from fairchild.db import migrations

N = len(migrations.all_migrations())

# A catalog snapshot of the public schema: everything a migration can change.
SNAPSHOT = {
    "tables": """
        SELECT c.relname, c.relkind::text, coalesce(array_to_string(c.reloptions, ','), '') AS options
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
        ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid) AS default, a.attnum
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 2""",
    "indexes": """
        SELECT i.indexname, i.tablename, i.indexdef,
               coalesce(array_to_string(c.reloptions, ','), '') AS options
        FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname
        JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname
        WHERE i.schemaname = 'public' ORDER BY 1""",
    "constraints": """
        SELECT cl.relname, co.conname, co.contype::text, pg_get_constraintdef(co.oid) AS def
        FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = cl.relnamespace
        WHERE n.nspname = 'public' ORDER BY 1, 2""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) AS def
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid) AS def
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' ORDER BY 1""",
    "migrations": "SELECT version, name FROM fairchild_migrations ORDER BY version",
}


async def snapshot(client: Fairchild) -> dict[str, list[tuple]]:
    out = {}
    for key, statement in SNAPSHOT.items():
        out[key] = [tuple(r) for r in await client.database.fetch(statement)]
    return out


@pytest.fixture
async def second_empty_dsn(aio_loop, pg_server):
    name = f"fairchild_t_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        async def run():
            conn = await asyncpg.connect(pg_server.admin_dsn)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        await aio_as_trio(run)()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.dsn(name)
    finally:
        with trio.CancelScope(shield=True):
            await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_install_is_idempotent(empty_dsn):
    async with Fairchild(empty_dsn) as fc:
        assert await fc.database.applied_migrations() == []
        assert await fc.install() == list(range(1, N + 1))
        first = await snapshot(fc)
        assert await fc.install() == []
        assert await fc.migrate() == []
        assert await snapshot(fc) == first
        assert await fc.database.applied_migrations() == list(range(1, N + 1))
        assert {r[0] for r in first["tables"]} >= {
            "fairchild_jobs", "fairchild_edges", "fairchild_workers", "fairchild_migrations"}


async def test_concurrent_migrate_from_two_clients(empty_dsn):
    results: list[list[int]] = []
    async with Fairchild(empty_dsn) as a, Fairchild(empty_dsn) as b:
        async def run(client):
            results.append(await client.migrate())

        async with trio.open_nursery() as nursery:
            for client in (a, b, a, b):
                nursery.start_soon(run, client)
        assert sorted(results) == [[], [], [], list(range(1, N + 1))]
        rows = await a.database.fetch("SELECT count(*) FROM fairchild_migrations")
        assert rows[0][0] == N


async def test_fresh_install_equals_all_migrations_applied_step_by_step(empty_dsn, second_empty_dsn):
    async with Fairchild(empty_dsn) as fresh, Fairchild(second_empty_dsn) as stepped:
        await fresh.install()
        for n in range(1, N + 1):
            applied = await stepped.database.migrate(target=n)
            assert [m.version for m in applied] == [n]
        assert await stepped.database.migrate() == []
        expected = await snapshot(fresh)
        got = await snapshot(stepped)
        for key in SNAPSHOT:
            assert got[key] == expected[key], key
        # The snapshot is not trivially empty.
        assert any("fairchild_jobs_claim_idx" in r[0] for r in expected["indexes"])
        assert any("fillfactor=85" in r[2] for r in expected["tables"] if r[0] == "fairchild_jobs")
