"""Fixtures and helpers of the web tests.

Test modules import the fixtures they use (``from webutil import client, web``): a
conftest.py here would shadow tests/conftest.py for the ``from conftest import ...`` of
other directories' tests (pytest imports every conftest as the module ``conftest``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from fairchild import Fairchild
from fairchild.web import create_app, serve

import web_tasks  # noqa: F401 - registers the tasks the API enqueues

ROOT = Path(__file__).resolve().parents[2]
FAIRCHILD_CMD = [sys.executable, "-m", "fairchild"]


def cli_env(dsn: str, **extra: str) -> dict[str, str]:
    """Environment for a `fairchild` subprocess pointed at `dsn` (tests/ importable)."""
    env = dict(os.environ)
    env.pop("FAIRCHILD_UI_TOKEN", None)
    env.update(FAIRCHILD_DATABASE_URL=dsn, PYTHONUNBUFFERED="1", LC_ALL="C.UTF-8",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


async def checksum(fairchild: Fairchild) -> str:
    """A digest of every row of the jobs and queues tables (to prove nothing changed)."""
    rows = await fairchild.database.fetch(
        "SELECT (SELECT coalesce(string_agg(t::text, '|' ORDER BY id), '') FROM fairchild_jobs t) AS jobs, "
        "(SELECT coalesce(string_agg(q::text, '|' ORDER BY name), '') FROM fairchild_queues q) AS queues"
    )
    return hashlib.sha256((rows[0]["jobs"] + "#" + rows[0]["queues"]).encode()).hexdigest()


@dataclass
class Served:
    """A running app: its base URL, the Quart app, and the event that stops it."""

    url: str
    app: Any
    stop: trio.Event

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20, **kwargs)


@pytest.fixture
def start_web(fairchild: Fairchild, nursery: trio.Nursery) -> Callable[..., Any]:
    """`served = await start_web(token=..., read_only=...)`: serve the app on a free port."""

    async def start(**options: Any) -> Served:
        app = create_app(fairchild, **options)
        stop = trio.Event()
        binds = await nursery.start(
            partial(serve, fairchild, "127.0.0.1", 0, app=app, shutdown_trigger=stop.wait, graceful_timeout=1.0)
        )
        return Served(binds[0], app, stop)

    return start


@pytest.fixture
async def web(start_web: Callable[..., Any]) -> Served:
    """The app with default settings (no token, loopback only)."""
    return await start_web()


@pytest.fixture
async def client(web: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with web.client() as c:
        yield c
