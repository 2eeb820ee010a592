"""Operator controls against real workers, through the CLI: `fairchild cancel`, `retry`,
`pause`, `resume`; and the persisted cancel request (heartbeat fallback, rescue)."""

from __future__ import annotations

import json
import subprocess
import time

import trio

import rel_tasks
from .rel_harness import FAIRCHILD_CMD, HEARTBEAT, LEASE, RESCUE, SIGKILL, SIGTERM, Harness, worker_env


async def cli(h: Harness, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process([*FAIRCHILD_CMD, *args], env=worker_env(h.dsn), capture_stdout=True,
                                  capture_stderr=True, check=False)


async def test_cancel_and_retry_from_the_cli(harness: Harness) -> None:
    h = harness
    queued = await rel_tasks.rel_sleep.enqueue(seconds=0.1, _queue="later")  # no worker serves "later" yet
    a = await h.start_worker("--queues", "default", concurrency=2, name="A")
    b = await h.start_worker("--queues", "default", concurrency=2, name="B")
    running = await rel_tasks.rel_sleep.enqueue(seconds=60)
    await h.wait_for(lambda: any(e["job_id"] == str(running.id) for e in h.events()), 10, "the job to start")

    # A queued job cancelled never runs.
    done = await cli(h, "cancel", str(queued.id))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "cancelled"

    # A running job: its scope is cancelled on whichever worker holds it, within a second.
    done = await cli(h, "cancel", str(running.id))
    returned = time.time()
    assert done.returncode == 0, done.stderr
    ended = await h.wait_for(lambda: h.scalar("SELECT state = 'cancelled' FROM fairchild_jobs WHERE id = $1",
                                              running.id), 5, "the running job to end cancelled", interval=0.02)
    assert ended - returned <= 1.0
    row = (await h.sql("SELECT attempt, errors::text AS errors, cancel_reason FROM fairchild_jobs WHERE id = $1",
                       running.id))[0]
    assert row["attempt"] == 1 and '"kind": "cancelled"' in row["errors"]
    assert not any(e["event"] == "finish" and e["job_id"] == str(running.id) for e in h.events())

    # Cancelling a finished job: exit 1 with a reason.
    again = await cli(h, "cancel", str(running.id))
    assert again.returncode == 1 and b"already cancelled" in again.stderr

    # Retry: it runs again (a new attempt) and completes this time.
    await h.sql("UPDATE fairchild_jobs SET args = '{\"seconds\": 0.1}' WHERE id = $1", running.id)
    done = await cli(h, "retry", str(running.id))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "available"
    await h.wait_for(lambda: h.scalar("SELECT state = 'completed' FROM fairchild_jobs WHERE id = $1", running.id),
                     5, "the retried job to complete")
    assert await h.scalar("SELECT attempt FROM fairchild_jobs WHERE id = $1", running.id) == 2
    # The cancelled queued job never ran.
    await h.executions()
    assert await h.scalar("SELECT count(*) FROM executions WHERE job_id = $1", queued.id) == 0
    bad = await cli(h, "retry", "not-a-uuid")
    assert bad.returncode == 2
    for w in (a, b):
        w.signal(SIGTERM)
        assert await w.wait(5) == 0


async def test_pause_and_resume_from_the_cli(harness: Harness) -> None:
    h = harness
    w = await h.start_worker(concurrency=5, name="P")
    done = await cli(h, "pause", "reports")
    assert done.returncode == 0, done.stderr
    paused = await rel_tasks.rel_sleep.enqueue_many([{"seconds": 0.01}] * 5, _queue="reports")
    other = await rel_tasks.rel_sleep.enqueue(seconds=0.01)
    await h.wait_for(lambda: h.scalar("SELECT state = 'completed' FROM fairchild_jobs WHERE id = $1", other.id),
                     5, "a job of another queue to run")
    await trio.sleep(2 * HEARTBEAT + 0.5)
    assert await h.scalar("SELECT count(*) FROM fairchild_jobs WHERE queue = 'reports' AND state = 'available'") == 5
    assert await h.scalar("SELECT paused FROM fairchild_queues WHERE name = 'reports'") is True  # persisted

    done = await cli(h, "resume", "reports")
    resumed = time.time()
    assert done.returncode == 0, done.stderr
    finished = await h.wait_for(
        lambda: h.scalar("SELECT count(*) = 5 FROM fairchild_jobs WHERE queue = 'reports' AND state = 'completed'"),
        5, "the resumed queue's jobs to run", interval=0.02)
    assert finished - resumed <= 1.0
    assert len(paused) == 5
    w.signal(SIGTERM)
    assert await w.wait(5) == 0


async def test_cancel_request_without_notify_is_found_by_the_heartbeat(harness: Harness) -> None:
    """A cancel request whose NOTIFY never arrives (written here with plain SQL) is picked
    up by the worker's next heartbeat."""
    h = harness
    w = await h.start_worker(concurrency=2, name="H")
    job = await rel_tasks.rel_sleep.enqueue(seconds=60)
    await h.wait_for(lambda: h.count("start") >= 1, 10, "the job to start")
    requested = time.time()
    await h.sql("UPDATE fairchild_jobs SET cancel_requested_at = now() WHERE id = $1", job.id)
    ended = await h.wait_for(lambda: h.scalar("SELECT state = 'cancelled' FROM fairchild_jobs WHERE id = $1", job.id),
                             5, "the heartbeat to cancel the job", interval=0.02)
    assert ended - requested <= 2 * HEARTBEAT + 0.5
    w.signal(SIGTERM)
    assert await w.wait(5) == 0


async def test_cancel_of_a_job_whose_worker_died(harness: Harness, fairchild) -> None:  # type: ignore[no-untyped-def]
    """The cancel request is persisted: when the worker holding the job is dead, the rescue
    ends the job `cancelled` instead of running it again."""
    h = harness
    a = await h.start_worker(concurrency=2, name="A")
    job = await rel_tasks.rel_sleep.enqueue(seconds=60)
    await h.wait_for(lambda: h.count("start") >= 1, 10, "the job to start")
    a.signal(SIGKILL)
    await a.wait(5)
    b = await h.start_worker(concurrency=2, name="B")
    current = await fairchild.cancel_job(job.id)
    assert current.state == "running"  # held by the dead worker until its lease runs out
    await h.wait_for(lambda: h.scalar("SELECT state = 'cancelled' FROM fairchild_jobs WHERE id = $1", job.id),
                     LEASE + RESCUE + 3, "the rescue to cancel the job")
    await trio.sleep(0.5)
    assert h.count("start") == 1  # never ran again
    b.signal(SIGTERM)
    assert await b.wait(5) == 0
