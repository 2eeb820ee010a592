"""examples/fanout.py and examples/nested.py run as programs and print the README's results."""

from __future__ import annotations

import sys

import trio

from core_helpers import ROOT, worker_env


async def run_example(dsn: str, name: str, *args: str) -> str:
    result = await trio.run_process(
        [sys.executable, str(ROOT / "examples" / name), *args], cwd=str(ROOT), env=worker_env(dsn),
        capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def test_fanout_example(dsn, sql):
    out = await run_example(dsn, "fanout.py")
    assert "orchestrator([1, 2, 3]): completed, {'spawned': 4}" in out
    assert "sum_results: 12" in out
    assert "completed, 5 jobs, 3 edges" in out
    assert (await sql("SELECT count(*) FROM fairchild_jobs WHERE state = 'completed'"))[0][0] == 5


async def test_nested_example(dsn):
    out = await run_example(dsn, "nested.py")
    per_batch = [sum(2 * (b * 100 + i) for i in range(5)) for b in range(10)]
    assert f"'per_batch': {per_batch}" in out
    assert f"'total': {sum(per_batch)}" in out
    assert "completed, 72 jobs" in out
