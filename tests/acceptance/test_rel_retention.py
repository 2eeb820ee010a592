"""Retention: finished jobs are pruned per final state, whole workflows at a time, in
bounded batches, never a job that is not final. Leadership: one maintenance leader per pass."""

from __future__ import annotations

from datetime import timedelta

import trio

import rel_tasks
from fairchild.db import units
from fairchild.worker.maintenance import Maintenance, RetentionPolicy


async def _finish(sql, job_id, state: str, age: timedelta) -> None:  # type: ignore[no-untyped-def]
    await sql("UPDATE fairchild_jobs SET state = $2, finished_at = now() - $3::interval WHERE id = $1",
              job_id, state, age)


async def test_retention_per_state_whole_workflows_bounded(fairchild, sql) -> None:  # type: ignore[no-untyped-def]
    day = timedelta(days=1)
    jobs = await rel_tasks.rel_noop.enqueue_many([{}] * 9)
    (old_done, new_done, cancelled_3d, cancelled_8d, discarded_8d, wf_root, wf_child, wf2_root, wf2_child) = jobs
    await _finish(sql, old_done.id, "completed", 2 * day)          # completed: kept 1 day -> pruned
    await _finish(sql, new_done.id, "completed", timedelta(hours=1))  # kept
    await _finish(sql, cancelled_3d.id, "cancelled", 3 * day)     # cancelled: kept 7 days -> kept
    await _finish(sql, cancelled_8d.id, "cancelled", 8 * day)     # pruned
    await _finish(sql, discarded_8d.id, "discarded", 8 * day)     # discarded: kept 7 days -> pruned
    # A workflow with one old finished job and one still running: nothing of it goes.
    await sql("UPDATE fairchild_jobs SET workflow_id = $1 WHERE id = ANY($2::uuid[])", wf_root.id, [wf_root.id, wf_child.id])
    await _finish(sql, wf_root.id, "completed", 30 * day)
    await sql("UPDATE fairchild_jobs SET state = 'running', attempt = 1 WHERE id = $1", wf_child.id)
    # A workflow entirely finished long ago goes whole.
    await sql("UPDATE fairchild_jobs SET workflow_id = $1 WHERE id = ANY($2::uuid[])", wf2_root.id, [wf2_root.id, wf2_child.id])
    await _finish(sql, wf2_root.id, "completed", 30 * day)
    await _finish(sql, wf2_child.id, "discarded", 30 * day)
    # Old jobs that are not final are never pruned, however old.
    waiting = await rel_tasks.rel_noop.enqueue()
    await sql("UPDATE fairchild_jobs SET inserted_at = now() - interval '400 days', "
              "scheduled_at = now() - interval '400 days' WHERE id = $1", waiting.id)

    maintenance = Maintenance(fairchild, interval=1, retention=RetentionPolicy())
    report = await maintenance.run_once()
    assert report.leader
    left = {r["id"] for r in await sql("SELECT id FROM fairchild_jobs")}
    assert left == {new_done.id, cancelled_3d.id, wf_root.id, wf_child.id, waiting.id}
    assert report.pruned == 5


async def test_pruning_is_bounded_per_pass(fairchild, sql) -> None:  # type: ignore[no-untyped-def]
    jobs = await rel_tasks.rel_noop.enqueue_many([{}] * 25)
    await sql("UPDATE fairchild_jobs SET state = 'completed', finished_at = now() - interval '2 days'")
    maintenance = Maintenance(fairchild, interval=1, retention=RetentionPolicy(batch=10))
    counts = []
    for _ in range(4):
        await maintenance.run_once()
        counts.append(await sql("SELECT count(*) AS n FROM fairchild_jobs"))
    assert [c[0]["n"] for c in counts] == [15, 5, 0, 0]
    assert len(jobs) == 25


async def test_one_maintenance_leader_per_pass(fairchild) -> None:  # type: ignore[no-untyped-def]
    """While one pass holds the maintenance lock (here: an open transaction that took it),
    concurrent passes are not leaders and do nothing; once it ends, the next pass leads."""
    import asyncpg
    from trio_asyncio import aio_as_trio

    results: list[bool] = []

    async def one() -> None:
        report = await fairchild.database.call(units.maintain, fairchild.clock(), 1000, None, 1000)
        results.append(report.leader)

    conn = await aio_as_trio(asyncpg.connect)(fairchild.url)
    try:
        tx = conn.transaction()
        await aio_as_trio(tx.start)()
        assert await aio_as_trio(conn.fetchval)("SELECT pg_try_advisory_xact_lock($1)", units.MAINTENANCE_LOCK_KEY)
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(one)
        assert results == [False, False, False]
        await aio_as_trio(tx.rollback)()
    finally:
        await aio_as_trio(conn.close)()
    results.clear()
    await one()
    assert results == [True]
