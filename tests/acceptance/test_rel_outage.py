"""Scenario 7 of reliability.md: PostgreSQL stopped for 30 s under a worker with jobs in
flight, on a private server (the shared one stays up for the other tests). Also: killed
backends (pg_terminate_backend) on the shared server."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

import rel_tasks
from fairchild import Fairchild
from .rel_harness import LEASE, SIGTERM, Harness, PrivatePostgres

OUTAGE = float(os.environ.get("REL_OUTAGE_SECONDS", "30"))


@pytest.fixture
async def private_pg(aio_loop: object) -> AsyncIterator[PrivatePostgres]:
    pg = PrivatePostgres()
    await trio.to_thread.run_sync(pg.init)
    await trio.to_thread.run_sync(pg.start)
    try:
        yield pg
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(pg.destroy)


def _error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]


async def test_database_outage(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    """The worker stays up, logs at most 20 warning/error lines, claims new jobs within 5 s
    of the restart, and each in-flight job completes exactly once: one finished during the
    outage (its outcome was buffered), one outlived the lease (the worker cancelled it
    itself; it ran again)."""
    pg = private_pg
    async with Fairchild(pg.dsn) as fc:
        await fc.install()

        async def sql(statement: str, *args: object) -> list:
            return await fc.database.fetch(statement, *args)

        h = Harness(pg.dsn, sql, tmp_path)
        await h.setup()
        try:
            w = await h.start_worker(concurrency=4, name="outage")
            short = await rel_tasks.rel_sleep.enqueue(seconds=1.5)  # ends while the database is down
            long = await rel_tasks.rel_sleep.enqueue(seconds=6.0)  # outlives the lease
            await h.wait_for(lambda: h.count("start") >= 2, 10, "both jobs to start")
            await fc.close()

            stopped_at = time.time()
            await trio.to_thread.run_sync(pg.stop)
            await trio.sleep(OUTAGE)
            assert w.returncode is None, h.logs()
            await trio.to_thread.run_sync(pg.start)
            restarted_at = time.time()
        except BaseException:
            await h.stop_all()
            raise

    async with Fairchild(pg.dsn) as fc:
        async def sql2(statement: str, *args: object) -> list:
            return await fc.database.fetch(statement, *args)

        h.sql = sql2
        try:
            fresh = await rel_tasks.rel_sleep.enqueue(seconds=0.1)
            started = await h.wait_for(
                lambda: any(e["event"] == "start" and e["job_id"] == str(fresh.id) for e in h.events()),
                10, "a new job to start after the restart", interval=0.02)
            assert started - restarted_at <= 5.0, f"new job claimed {started - restarted_at:.1f} s after the restart"
            ids = [short.id, long.id, fresh.id]
            await h.wait_for(lambda: h.scalar(
                "SELECT count(*) = 3 FROM fairchild_jobs WHERE id = ANY($1::uuid[]) AND state = 'completed'", ids),
                20, "the three jobs to complete")

            assert w.returncode is None  # the worker stayed up
            assert await h.scalar("SELECT count(*) FROM fairchild_workers WHERE pid = $1", w.pid) == 1
            await h.assert_completed_at_most_once()
            assert await h.scalar("SELECT count(*) FROM rel_final WHERE state = 'completed'") == 3
            await h.executions()
            # The long job's first attempt was cut by this worker when it could not renew its
            # lease (before the lease ran out), then ran again and completed once.
            long_row = (await h.sql("SELECT attempt, errors::text AS errors FROM fairchild_jobs WHERE id = $1",
                                    long.id))[0]
            assert long_row["attempt"] == 2 and ("lease_lost" in long_row["errors"] or "worker_lost" in long_row["errors"])
            first_run = await h.sql("SELECT event, t FROM executions WHERE job_id = $1 AND attempt = 1 ORDER BY t",
                                    long.id)
            assert [r["event"] for r in first_run] == ["start"]  # it never finished: cancelled in time
            assert stopped_at + LEASE >= first_run[0]["t"]  # (it started before the outage)
            assert "cannot renew its lease" in w.log()

            lines = _error_lines(w.log())
            assert len(lines) <= 20, "\n".join(lines)

            w.signal(SIGTERM)
            assert await w.wait(10) == 0
        finally:
            await h.stop_all()


async def test_killed_backends(harness: Harness) -> None:
    """Every connection of a busy worker is killed (pg_terminate_backend), twice: work
    resumes within seconds, nothing is lost, nothing completes twice."""
    h = harness
    n = 300
    await rel_tasks.rel_sleep.enqueue_many([{"seconds": 0.05}] * n)
    ours = [r[0] for r in await h.sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")]
    w = await h.start_worker(concurrency=10, name="backends")
    for _ in range(2):
        await h.wait_for(lambda: h.count("finish") >= 50, 10, "progress")
        killed = await h.sql("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                WHERE datname = current_database() AND pid <> ALL($1::int[])""", ours)
        assert killed
        await trio.sleep(0.5)
    await h.wait_for(lambda: h.scalar("SELECT count(*) = $1 FROM fairchild_jobs WHERE state = 'completed'", n),
                     30, "every job to complete")
    assert w.returncode is None
    await h.assert_completed_at_most_once()
    assert await h.scalar("SELECT count(*) FROM rel_final") == n
    w.signal(SIGTERM)
    assert await w.wait(5) == 0


async def test_claim_committed_but_result_lost(harness: Harness) -> None:
    """A claim can commit while its result never reaches the worker (the connection dies,
    or the statement times out, after the commit). The worker's lease stays valid, so no
    rescuer would ever take those rows: after any failed claim, the worker releases rows
    held under its id that it does not know about (attempt refunded), then claims again."""
    h = harness
    w = await h.start_worker("--queues", "default", concurrency=2, name="lost-claim")
    w_id = await h.scalar("SELECT id FROM fairchild_workers WHERE pid = $1", w.pid)
    job = await rel_tasks.rel_sleep.enqueue(seconds=0.01, _queue="elsewhere")
    # As if this worker had claimed it and the result was lost in transit.
    await h.sql("UPDATE fairchild_jobs SET state = 'running', attempt = 1, worker_id = $2, attempted_at = now(), "
                "queue = 'default' WHERE id = $1", job.id, w_id)
    await trio.sleep(1.5)  # heartbeats and rescue passes: the lease is valid, nobody touches it
    assert await h.scalar("SELECT state FROM fairchild_jobs WHERE id = $1", job.id) == "running"
    # The next claim fails (its statement errors); then the worker reconciles.
    await h.sql("ALTER TABLE fairchild_queues RENAME TO fairchild_queues_away")
    try:
        await h.wait_for(lambda: "claiming failed" in w.log(), 10, "a claim to fail")
    finally:
        await h.sql("ALTER TABLE fairchild_queues_away RENAME TO fairchild_queues")
    await h.wait_for(lambda: h.scalar("SELECT state = 'completed' FROM fairchild_jobs WHERE id = $1", job.id),
                     10, "the released job to run")
    assert "its claim committed but the result was lost" in w.log()
    assert await h.scalar("SELECT attempt FROM fairchild_jobs WHERE id = $1", job.id) == 1  # refunded, ran once
    assert h.count("start") == 1
    w.signal(SIGTERM)
    assert await w.wait(5) == 0
