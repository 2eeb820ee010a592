"""Scenarios 1 and 6 of reliability.md: workers killed with SIGKILL / os._exit.

Rescue is by lease, never by age: the dead worker's jobs are available again within
lease + rescue interval (+1 s) of the kill, run once more elsewhere, and complete once.
"""

from __future__ import annotations


import pytest
import trio

import rel_tasks
from .rel_harness import LEASE, RESCUE, SIGKILL, SIGTERM, Harness

N = 50


@pytest.mark.parametrize("variant", ["plain", "row_deleted", "restarted"])
async def test_kill_9_with_jobs_in_flight(harness: Harness, variant: str) -> None:
    """Scenario 1: A (concurrency 50) runs 50 long jobs and is SIGKILLed while B runs.

    Scaled: a job sleeps 30 s on attempt 1 (the attempt A is killed in) and 0.3 s on later
    attempts, so B finishes them without the suite waiting 30 s."""
    h = harness
    jobs = await rel_tasks.rel_sleep.enqueue_many(
        [{"seconds": 0.3, "first_attempt_seconds": 30}] * N)
    a = await h.start_worker(concurrency=N, name="A")
    await h.wait_for(lambda: h.count("start") >= N, 15, "A to start all 50 jobs")
    b = await h.start_worker(concurrency=N, name="B")  # B runs, idle: every job is held by A
    a_id = await h.scalar("SELECT id FROM fairchild_workers WHERE pid = $1", a.pid)
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE state = 'running' AND worker_id = $1", a_id) == N

    killed_at = a.signal(SIGKILL)
    assert await a.wait(5) == -9
    if variant == "row_deleted":
        await h.sql("DELETE FROM fairchild_workers WHERE id = $1", a_id)
    elif variant == "restarted":
        await h.start_worker(concurrency=N, name="A2", wait_ready=False)  # same host, new process

    # All 50 leave A within lease + rescue interval + 1 s. (They are claimed again at once,
    # so "available" is observed as "no longer running under A".)
    available_at = await h.wait_for(
        lambda: h.scalar("SELECT count(*) = 0 FROM fairchild_jobs WHERE worker_id = $1 AND state = 'running'", a_id),
        LEASE + RESCUE + 5, "the rescue of A's jobs", interval=0.02)
    assert available_at - killed_at <= LEASE + RESCUE + 1, f"rescued {available_at - killed_at:.2f} s after the kill"

    await h.wait_for(lambda: h.scalar("SELECT count(*) = $1 FROM fairchild_jobs WHERE state = 'completed'", N),
                     15, "all 50 to complete")
    await h.executions()
    per_job = await h.sql("""
        SELECT j.id, j.attempt,
               count(*) FILTER (WHERE e.event = 'start') AS starts,
               array_agg(e.attempt ORDER BY e.attempt) FILTER (WHERE e.event = 'start') AS start_attempts,
               count(*) FILTER (WHERE e.event = 'finish') AS finishes,
               bool_and(e.worker_id <> $1) FILTER (WHERE e.event = 'finish') AS finished_elsewhere
        FROM fairchild_jobs j LEFT JOIN executions e ON e.job_id = j.id
        GROUP BY j.id, j.attempt""", a_id)
    assert len(per_job) == N
    for row in per_job:
        assert row["starts"] == 2 and row["start_attempts"] == [1, 2], dict(row)
        assert row["finishes"] == 1 and row["finished_elsewhere"], dict(row)
        assert row["attempt"] == 2, dict(row)
    errors = await h.sql("SELECT errors FROM fairchild_jobs")
    assert all("worker_lost" in e["errors"] for e in errors)
    await h.assert_completed_at_most_once()
    assert await h.scalar("SELECT count(*) FROM rel_final") == N
    # Scaled: 1 s later rather than 10 s.
    await trio.sleep(1)
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE state = 'running'") == 0
    assert {j.id for j in jobs} == {r["id"] for r in per_job}
    # A's dead worker row is gone too (removed by maintenance).
    assert await h.scalar("SELECT count(*) FROM fairchild_workers WHERE id = $1", a_id) == 0
    b.signal(SIGTERM)
    assert await b.wait(5) == 0


async def test_crash_loop_job(harness: Harness) -> None:
    """Scenario 6: a job that kills its worker (os._exit(137)) under a supervisor that
    restarts the worker: after 3 attempts it is discarded ("worker lost"), with exactly 3
    worker deaths, while other jobs keep completing between restarts."""
    h = harness
    crash = await rel_tasks.rel_crash.enqueue(delay=1.0)
    deaths = 0
    incarnations = []
    stop_feeding = trio.Event()

    async def feed() -> None:  # normal jobs keep arriving throughout
        i = 0
        while not stop_feeding.is_set():
            await rel_tasks.rel_quick.enqueue(n=i)
            i += 1
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        with trio.fail_after(60):
            while True:
                w = await h.start_worker(concurrency=5, name=f"crash{len(incarnations)}")
                incarnations.append(w)
                discarded = False
                while w.returncode is None:
                    state = await h.scalar("SELECT state FROM fairchild_jobs WHERE id = $1", crash.id)
                    if state == "discarded":
                        discarded = True
                        break
                    await trio.sleep(0.1)
                if discarded:
                    break
                assert w.returncode == 137, h.logs()
                deaths += 1
        stop_feeding.set()
        await trio.sleep(1)  # let the last normal jobs finish
        last = incarnations[-1]
        last.signal(SIGTERM)
        assert await last.wait(5) == 0

    assert deaths == 3
    row = (await h.sql("SELECT state, attempt, errors FROM fairchild_jobs WHERE id = $1", crash.id))[0]
    assert row["state"] == "discarded" and row["attempt"] == 3
    import json
    errors = json.loads(row["errors"]) if isinstance(row["errors"], str) else row["errors"]
    assert [e["kind"] for e in errors] == ["worker_lost"] * 3
    assert "worker lost" in errors[-1]["error"]
    # Other jobs completed in every worker's lifetime, and each exactly once.
    await h.executions()
    per_pid = await h.sql("""
        SELECT e.pid, count(*) AS n FROM executions e JOIN fairchild_jobs j ON j.id = e.job_id
        WHERE j.task = 'rel_tasks.rel_quick' AND e.event = 'finish' GROUP BY e.pid""")
    finished_by = {r["pid"]: r["n"] for r in per_pid}
    for w in incarnations:
        assert finished_by.get(w.pid, 0) >= 1, (finished_by, [w.pid for w in incarnations])
    quick = await h.state_counts()
    assert quick.get("running", 0) == 0
    assert await h.scalar("""SELECT count(*) FROM fairchild_jobs
                             WHERE task = 'rel_tasks.rel_quick' AND state <> 'completed'""") == 0
    await h.assert_completed_at_most_once()
    dup = await h.sql("""SELECT job_id FROM executions WHERE event = 'finish'
                         GROUP BY job_id HAVING count(*) > 1""")
    # A quick job's body may finish in a worker that dies before writing its outcome; then it
    # runs again (at least once). Completion itself is counted by rel_final above.
    assert len(dup) <= deaths


async def test_frozen_worker_is_fenced(harness: Harness) -> None:
    """A worker frozen (SIGSTOP) mid-job loses its lease; the job is rescued and completed
    by B (attempt 2). When A thaws, its writes for attempt 1 match nothing (fenced): the
    later attempt's completion is never overwritten, and A stays up and registers again."""
    import signal as _signal

    h = harness
    a = await h.start_worker(concurrency=2, name="A")
    job = await rel_tasks.rel_sleep.enqueue(seconds=0.2, first_attempt_seconds=2.0)
    await h.wait_for(lambda: h.count("start") >= 1, 10, "A to start the job")
    a.signal(_signal.SIGSTOP)
    b = await h.start_worker(concurrency=2, name="B")
    try:
        await h.wait_for(lambda: h.scalar("SELECT state = 'completed' FROM fairchild_jobs WHERE id = $1", job.id),
                         LEASE + RESCUE + 5, "B to complete the rescued job")
        before = (await h.sql("SELECT state, attempt, worker_id, errors::text AS errors, finished_at "
                              "FROM fairchild_jobs WHERE id = $1", job.id))[0]
        assert before["attempt"] == 2
    finally:
        a.signal(_signal.SIGCONT)
    # A thaws: its job's deadline passed and its lease is gone; whatever it writes is fenced.
    await h.wait_for(lambda: "its lease was lost" in a.log() or "taken for dead" in a.log(), 10,
                     "A to notice it lost its lease")
    await h.wait_for(lambda: h.scalar("SELECT count(*) = 1 FROM fairchild_workers WHERE pid = $1", a.pid), 10,
                     "A to register again")
    await trio.sleep(1)
    after = (await h.sql("SELECT state, attempt, worker_id, errors::text AS errors, finished_at "
                         "FROM fairchild_jobs WHERE id = $1", job.id))[0]
    assert after == before  # untouched by A
    await h.assert_completed_at_most_once()
    assert a.returncode is None
    for w in (a, b):
        w.signal(SIGTERM)
        assert await w.wait(5) == 0
