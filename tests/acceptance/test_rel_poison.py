"""Scenario 5 of reliability.md: poison jobs fail alone; the worker stays up."""

from __future__ import annotations

import json
from datetime import datetime

import rel_tasks
from .rel_harness import SIGTERM, Harness

ASYNC_KINDS = ["value_error", "system_exit", "keyboard_interrupt", "custom_base", "exception_group",
               "unserialisable", "nul_result", "huge_result", "bigint_result", "surrogate_result"]
SYNC_KINDS = ["keyboard_interrupt", "system_exit"]
EXPECTED_TYPE = {
    "value_error": "builtins.ValueError",
    "system_exit": "builtins.SystemExit",
    "keyboard_interrupt": "builtins.KeyboardInterrupt",
    "custom_base": "rel_tasks.RelCustomBase",
    "exception_group": "builtins.ExceptionGroup",
    "unserialisable": "fairchild.errors.NotSerializable",
    "nul_result": "fairchild.errors.NotSerializable",
    "huge_result": "fairchild.errors.NotSerializable",
    "bigint_result": "builtins.ValueError",
    "surrogate_result": None,  # refused by the database: a "storage" failure, no traceback
}
N_NORMAL = 1000


def _errors(value: object) -> list[dict]:
    return json.loads(value) if isinstance(value, str) else value  # type: ignore[return-value]


async def test_poison_jobs(harness: Harness) -> None:
    h = harness
    normal = await rel_tasks.rel_quick.enqueue_many([{"n": i} for i in range(N_NORMAL // 2)])
    poison = {k: await rel_tasks.rel_poison.enqueue(kind=k) for k in ASYNC_KINDS}
    poison_sync = {k: await rel_tasks.rel_poison_sync.enqueue(kind=k) for k in SYNC_KINDS}
    hang = await rel_tasks.rel_hang.enqueue()
    normal += await rel_tasks.rel_quick.enqueue_many([{"n": i} for i in range(N_NORMAL // 2, N_NORMAL)])
    poison_ids = {j.id for j in [*poison.values(), *poison_sync.values(), hang]}

    w = await h.start_worker(concurrency=20, name="poison")
    worker_row = (await h.sql("SELECT id, started_at FROM fairchild_workers WHERE pid = $1", w.pid))[0]
    # The CLI's default backoff: retries after ~2 s and ~4 s.
    await h.wait_for(
        lambda: h.scalar("SELECT count(*) = $1 FROM fairchild_jobs WHERE state IN ('completed', 'discarded')",
                         N_NORMAL + len(poison_ids)),
        40, "every job to finish", interval=0.2)

    # The same process served throughout: never exited, same worker row.
    assert w.returncode is None
    assert await h.sql("SELECT id, started_at FROM fairchild_workers WHERE pid = $1", w.pid) == [worker_row]

    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE state = 'completed' AND task = 'rel_tasks.rel_quick'") == N_NORMAL
    rows = {r["id"]: r for r in await h.sql("SELECT id, state, attempt, errors FROM fairchild_jobs WHERE id = ANY($1::uuid[])",
                                             list(poison_ids))}
    for kind, job in [*poison.items(), *poison_sync.items()]:
        row = rows[job.id]
        assert row["state"] == "discarded" and row["attempt"] == 3, (kind, dict(row))
        errors = _errors(row["errors"])
        assert [e["attempt"] for e in errors] == [1, 2, 3]
        for e in errors:
            assert e["type"] == EXPECTED_TYPE[kind], (kind, e["type"])
            if kind == "surrogate_result":
                assert e["kind"] == "storage" and "could not be stored" in e["error"], e
                continue
            assert e["kind"] in ("error", "result")
            assert e["traceback"] and len(e["traceback"].encode()) <= 64 * 1024 + 100, (kind, len(e["traceback"]))
    value_error = _errors(rows[poison["value_error"].id]["errors"])[0]
    assert value_error["traceback"].startswith("... (truncated)")  # 200 KB message: truncated
    assert len(value_error["error"]) <= 4096
    assert "NUL" in _errors(rows[poison["nul_result"].id]["errors"])[0]["error"]

    # The timeout job: 3 attempts, each ended by its 1 s timeout within 1.2 s.
    row = rows[hang.id]
    assert row["state"] == "discarded" and row["attempt"] == 3
    errors = _errors(row["errors"])
    assert [e["kind"] for e in errors] == ["timeout"] * 3
    await h.executions()
    starts = {r["attempt"]: r["t"] for r in await h.sql(
        "SELECT attempt, t FROM executions WHERE job_id = $1 AND event = 'start'", hang.id)}
    for e in errors:
        ended = datetime.fromisoformat(e["at"]).timestamp()
        assert ended - starts[e["attempt"]] <= 1.2, (e["attempt"], ended - starts[e["attempt"]])

    # trio.Cancelled is never stored as a failure, on any job.
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE errors::text LIKE '%Cancelled%'") == 0
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE errors::text LIKE '%interrupted%'") == 0
    await h.assert_completed_at_most_once()
    # Every normal job ran exactly once.
    assert await h.scalar("""SELECT count(*) FROM (SELECT e.job_id FROM executions e
                             JOIN fairchild_jobs j ON j.id = e.job_id AND j.task = 'rel_tasks.rel_quick'
                             WHERE e.event = 'start' GROUP BY e.job_id HAVING count(*) = 1) x""") == N_NORMAL
    w.signal(SIGTERM)
    assert await w.wait(5) == 0
