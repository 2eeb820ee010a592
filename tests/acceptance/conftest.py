"""Fixtures of the reliability acceptance suite (see rel_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from .rel_harness import Harness


@pytest.fixture
async def harness(dsn: str, sql: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(dsn, sql, tmp_path)
    await h.setup()
    try:
        yield h
    finally:
        with trio.CancelScope(shield=True):
            await h.stop_all()


