"""The README's main job (`python3 scripts/demo` runs `python -m examples.demo`): a worker
processes the example workflows with the dashboard served beside it, then stops cleanly."""

from __future__ import annotations

import sys

import trio

from conftest import ROOT, worker_env


async def test_demo_processes_the_example_workflows(dsn: str, sql) -> None:  # type: ignore[no-untyped-def]
    result = await trio.run_process(
        [sys.executable, "-m", "examples.demo", "--once", "--port", "0"],
        cwd=ROOT, env=worker_env(dsn), capture_stdout=True, capture_stderr=True, check=False,
    )
    log = result.stderr.decode()
    assert result.returncode == 0, log
    assert "dashboard: http://" in log
    assert "examples.fanout.orchestrator: completed" in log
    assert "'total': 45200" in log  # nested: 10 batches of 5 items, item i -> 2 i
    rows = await sql("SELECT state, count(*) AS n FROM fairchild_jobs GROUP BY state")
    states = {r["state"]: r["n"] for r in rows}
    assert set(states) <= {"completed", "discarded", "retryable", "running"}, states
    assert await sql("SELECT 1 FROM fairchild_workers") == []  # deregistered on the way out
