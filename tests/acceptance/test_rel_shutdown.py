"""Scenarios 2, 3 and 4 of reliability.md: SIGTERM/SIGINT shutdown of a real worker.

First signal: stop claiming at once; running jobs get `grace` (2 s); then they are
cancelled and released to run again immediately, attempt refunded, error kind
"interrupted"; jobs ignoring cancellation are abandoned after `abandon_timeout` (2 s) and
their rows released anyway; the worker row is removed; exit 0. Second signal: cancel now,
exit within 1 s. Third: exit immediately.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
import trio

import rel_tasks
from .rel_harness import ABANDON, GRACE, SIGINT, SIGTERM, Harness


def _errors(value: object) -> list[dict]:
    return json.loads(value) if isinstance(value, str) else value  # type: ignore[return-value]


async def test_soft_stop(harness: Harness) -> None:
    """Scenario 2: 100 running jobs of 0.5 s and 1,000 queued; SIGTERM."""
    h = harness
    await rel_tasks.rel_sleep.enqueue_many([{"seconds": 0.5}] * 1100)
    w = await h.start_worker(concurrency=100, name="soft")
    await h.wait_for(lambda: h.count("start") >= 100, 15, "100 running jobs", interval=0.01)
    sigterm_at = w.signal(SIGTERM)
    sigterm_time = datetime.fromtimestamp(sigterm_at, timezone.utc)
    assert await w.wait(5) == 0, h.logs()
    exited = time.time() - sigterm_at
    assert exited <= 1.5, f"exit took {exited:.2f} s"

    await h.executions()
    started = await h.scalar("SELECT count(DISTINCT job_id) FROM executions WHERE event = 'start'")
    assert started == 100
    # The 100 finished exactly once (body and completion).
    assert await h.scalar("""SELECT count(*) FROM (SELECT job_id FROM executions WHERE event = 'finish'
                             GROUP BY job_id HAVING count(*) = 1) f""") == 100
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE state = 'completed' AND attempt = 1") == 100
    await h.assert_completed_at_most_once()
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE attempted_at > $1", sigterm_time) == 0
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE state = 'available' AND attempt = 0") == 1000
    assert await h.scalar("SELECT count(*) FROM fairchild_workers") == 0


async def test_grace_exceeded(harness: Harness) -> None:
    """Scenario 3: 20 jobs that sleep 60 s; SIGTERM: exit within grace + 1 s, the jobs
    released (available, attempt refunded, error "interrupted"), and a second worker
    starts them within 1 s."""
    h = harness
    jobs = await rel_tasks.rel_sleep.enqueue_many([{"seconds": 60}] * 20)
    a = await h.start_worker(concurrency=20, name="A")
    await h.wait_for(lambda: h.count("start") >= 20, 15, "20 running jobs")
    b = await h.start_worker(concurrency=20, name="B")  # idle: A holds every job
    a_id = await h.scalar("SELECT id FROM fairchild_workers WHERE pid = $1", a.pid)
    b_id = await h.scalar("SELECT id FROM fairchild_workers WHERE pid = $1", b.pid)

    sigterm_at = a.signal(SIGTERM)
    assert await a.wait(GRACE + 3) == 0, h.logs()
    exited_at = time.time()
    assert exited_at - sigterm_at <= GRACE + 1, f"exit took {exited_at - sigterm_at:.2f} s"

    # B starts all 20 within 1 s of their release (which happened before A exited).
    b_started = await h.wait_for(
        lambda: sum(1 for e in h.events() if e["worker_id"] == str(b_id) and e["event"] == "start") >= 20,
        5, "B to start the 20 jobs", interval=0.02)
    assert b_started - exited_at <= 1.0, f"B started them {b_started - exited_at:.2f} s after A exited"

    rows = await h.sql("SELECT id, state, attempt, worker_id, errors, scheduled_at FROM fairchild_jobs")
    assert len(rows) == 20
    for row in rows:
        errors = _errors(row["errors"])
        # Released by A, attempt refunded: B's claim made it attempt 1 again (not 2).
        assert [(e["kind"], e["attempt"]) for e in errors] == [("interrupted", 1)], errors
        assert row["state"] == "running" and row["worker_id"] == b_id and row["attempt"] == 1
        assert row["scheduled_at"] <= datetime.now(timezone.utc)
    assert await h.scalar("SELECT count(*) FROM fairchild_workers WHERE id = $1", a_id) == 0
    assert {j.id for j in jobs} == {r["id"] for r in rows}

    # Stop B at once with two signals (SIGINT this time): released again, refunded again.
    b.signal(SIGINT)
    await trio.sleep(0.2)
    second = b.signal(SIGINT)
    assert await b.wait(3) == 0
    assert time.time() - second <= 1.0
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE state = 'available' AND attempt = 0") == 20


async def _start_uncooperative(h: Harness) -> tuple:
    thread_job = await rel_tasks.rel_thread_sleep.enqueue(seconds=60)
    shielded_job = await rel_tasks.rel_shielded.enqueue(seconds=60)
    w = await h.start_worker(concurrency=4, name="uncooperative")
    await h.wait_for(lambda: h.count("start") >= 2, 15, "both jobs to start")
    w_id = await h.scalar("SELECT id FROM fairchild_workers WHERE pid = $1", w.pid)
    return w, w_id, thread_job, shielded_job


async def _assert_released_by_worker(h: Harness, w_id: object) -> None:
    rows = await h.sql("SELECT state, attempt, errors FROM fairchild_jobs")
    for row in rows:
        kinds = [e["kind"] for e in _errors(row["errors"])]
        # Released by the worker itself ("interrupted", refunded), not by the rescuer
        # ("worker_lost" after the lease).
        assert row["state"] == "available" and row["attempt"] == 0 and kinds == ["interrupted"], dict(row)
    assert await h.scalar("SELECT count(*) FROM fairchild_workers WHERE id = $1", w_id) == 0


async def test_uncooperative_jobs_one_signal(harness: Harness) -> None:
    """Scenario 4: a job blocking a thread in time.sleep(60) and one looping under a
    shielded cancel scope; SIGTERM: exit 0 within grace + abandon_timeout + 1 s, both rows
    released by the worker itself."""
    h = harness
    w, w_id, *_ = await _start_uncooperative(h)
    sigterm_at = w.signal(SIGTERM)
    assert await w.wait(GRACE + ABANDON + 3) == 0, h.logs()
    took = time.time() - sigterm_at
    assert took <= GRACE + ABANDON + 1, f"exit took {took:.2f} s"
    await _assert_released_by_worker(h, w_id)
    assert "abandoning it and releasing its row" in w.log()


@pytest.mark.parametrize("second_after", [0.5, GRACE + 0.5])
async def test_uncooperative_jobs_second_signal(harness: Harness, second_after: float) -> None:
    """Scenario 4: a second SIGTERM at any point (during the grace period, or while
    waiting for jobs that ignore cancellation) forces exit within 1 s; rows still released."""
    h = harness
    w, w_id, *_ = await _start_uncooperative(h)
    w.signal(SIGTERM)
    await trio.sleep(second_after)
    assert w.returncode is None
    second_at = w.signal(SIGTERM)
    assert await w.wait(5) == 0, h.logs()
    took = time.time() - second_at
    assert took <= 1.0, f"exit took {took:.2f} s after the second signal"
    await _assert_released_by_worker(h, w_id)


async def test_third_signal_exits_immediately(harness: Harness) -> None:
    """Scenario 4: a third SIGTERM exits immediately (status 128 + 15), releasing nothing:
    the rescuer makes the jobs available after the lease."""
    h = harness
    w, w_id, *_ = await _start_uncooperative(h)
    w.signal(SIGTERM)
    await trio.sleep(0.1)
    w.signal(SIGTERM)
    await trio.sleep(0.1)
    third_at = w.signal(SIGTERM)
    assert await w.wait(5) == 128 + 15
    took = time.time() - third_at
    assert took <= 0.5, f"exit took {took:.2f} s after the third signal"
