"""Enqueueing against a real PostgreSQL: defaults, options, validation, scheduling,
transactional enqueue, enqueue_many, get_job/wait."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
import trio
from trio_asyncio import aio_as_trio

import core_tasks
from fairchild import InvalidArguments, Job, JobNotFound, JobState, NotSerializable, transaction


async def count(sql, where: str = "TRUE", *args) -> int:
    return (await sql(f"SELECT count(*) AS n FROM fairchild_jobs WHERE {where}", *args))[0]["n"]


async def test_enqueue_returns_job_with_defaults(fairchild, sql):
    before = datetime.now(timezone.utc)
    job = await core_tasks.add.enqueue(a=1, b=2)
    assert isinstance(job, Job)
    assert job.task == "core_tasks.add"
    assert job.queue == "default"
    assert job.args == {"a": 1, "b": 2}
    assert job.state is JobState.AVAILABLE
    assert job.priority == 5
    assert job.attempt == 0
    assert job.max_attempts == 3
    assert job.workflow_id == job.id
    assert job.parent_id is None and job.result is None and job.errors == []
    assert job.scheduled_at >= before - timedelta(seconds=1)
    assert job.scheduled_at.tzinfo is not None
    (row,) = await sql("SELECT * FROM fairchild_jobs")
    assert row["id"] == job.id and row["state"] == "available"
    assert await fairchild.get_job(job.id) == job
    assert await fairchild.get_job(str(job.id)) == job


async def test_task_level_options_are_stored(fairchild, sql):
    job = await core_tasks.async_add.enqueue(a=1, b=2)
    assert (job.queue, job.priority, job.max_attempts, job.tags) == ("core_other", 3, 4, ["core", "math"])
    (row,) = await sql("SELECT queue, priority, max_attempts, tags FROM fairchild_jobs")
    assert tuple(row) == ("core_other", 3, 4, ["core", "math"])


async def test_enqueue_options_override_defaults(fairchild, sql):
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    job = await core_tasks.add.enqueue(a=1, b=2, _priority=1, _queue="high", _scheduled_at=when)
    assert (job.priority, job.queue, job.state) == (1, "high", JobState.SCHEDULED)
    assert job.scheduled_at == when
    (row,) = await sql("SELECT priority, queue, state, scheduled_at FROM fairchild_jobs")
    assert tuple(row) == (1, "high", "scheduled", when)


async def test_scheduled_at_in_the_past_is_available(fairchild):
    job = await core_tasks.add.enqueue(a=1, b=2, _scheduled_at=datetime(2020, 1, 1, tzinfo=timezone.utc))
    assert job.state is JobState.AVAILABLE


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"a": 1}, InvalidArguments),
        ({"a": 1, "b": 2, "c": 3}, InvalidArguments),
        ({"a": 1, "b": {1, 2}}, NotSerializable),
        ({"a": 1, "b": [float("nan")]}, NotSerializable),
        ({"a": 1, "b": "nul\x00"}, NotSerializable),
        ({"a": 1, "b": {"$fairchild_future": "00000000-0000-0000-0000-000000000000"}}, InvalidArguments),
        ({"a": 1, "b": 2, "_priority": 10}, InvalidArguments),
        ({"a": 1, "b": 2, "_scheduled_at": datetime(2030, 1, 1)}, InvalidArguments),
    ],
)
async def test_validation_errors_insert_nothing(fairchild, sql, kwargs, error):
    with pytest.raises(error):
        await core_tasks.add.enqueue(**kwargs)
    assert await count(sql) == 0


async def test_enqueue_many_inserts_all_in_order(fairchild, sql):
    jobs = await core_tasks.add.enqueue_many([{"a": i, "b": i} for i in range(500)], _priority=2)
    assert [j.args["a"] for j in jobs] == list(range(500))
    assert len({j.id for j in jobs}) == 500
    assert await count(sql, "priority = 2 AND state = 'available'") == 500
    assert await core_tasks.add.enqueue_many([]) == []


async def test_enqueue_many_is_all_or_nothing(fairchild, sql):
    items = [{"a": i, "b": i} for i in range(10)] + [{"a": 1, "b": object()}]
    with pytest.raises(NotSerializable, match="item 10"):
        await core_tasks.add.enqueue_many(items)
    assert await count(sql) == 0


async def test_enqueue_in_and_enqueue_at_schedule_the_job(fairchild, sql):
    later = await core_tasks.add.enqueue_in(minutes=30, a=1, b=2)
    assert later.state is JobState.SCHEDULED
    delta = later.scheduled_at - datetime.now(timezone.utc)
    assert timedelta(minutes=29) < delta <= timedelta(minutes=30)
    when = datetime(2099, 1, 15, 10, 0, tzinfo=timezone.utc)
    at = await core_tasks.add.enqueue_at(when, a=1, b=2)
    assert at.state is JobState.SCHEDULED and at.scheduled_at == when
    assert await count(sql, "state = 'scheduled'") == 2


async def test_scheduled_job_is_not_claimed_before_due_and_runs_when_due(fairchild, sql, start_worker):
    far = await core_tasks.add.enqueue_in(hours=1, a=0, b=0)
    soon = await core_tasks.add.enqueue_in(seconds=0.3, a=2, b=3)
    now_job = await core_tasks.add.enqueue(a=1, b=1)
    await start_worker(concurrency=4)
    done_now = await fairchild.wait(now_job, timeout=10)
    done = await fairchild.wait(soon, timeout=10)
    # Claimed (attempted) no earlier than it was due, on the same clock.
    assert done.state is JobState.COMPLETED and done.result == 5
    assert done.attempted_at >= soon.scheduled_at
    assert done_now.result == 2
    far_now = await fairchild.get_job(far)
    assert far_now.state is JobState.SCHEDULED and far_now.attempt == 0


async def test_get_job_unknown_raises(fairchild):
    missing = uuid.uuid4()
    with pytest.raises(JobNotFound, match=str(missing)):
        await fairchild.get_job(missing)
    with pytest.raises(JobNotFound):
        await fairchild.wait(missing, timeout=5)


async def test_wait_timeout_raises_timeout_error(fairchild):
    job = await core_tasks.add.enqueue(a=1, b=2)  # no worker: never finishes
    with pytest.raises(TimeoutError):
        await fairchild.wait(job, timeout=0.2)
    assert (await fairchild.get_job(job)).state is JobState.AVAILABLE


# -- transactional enqueue ------------------------------------------------------------------


async def _own_connection(dsn):
    return await aio_as_trio(asyncpg.connect)(dsn)


class Rollback(Exception):
    """Raised inside the block to roll the caller's transaction back."""


async def _enqueue_in_transaction(conn, commit: bool):
    """The caller's own transaction, held from Trio with `fairchild.transaction`."""
    job = inside = None
    try:
        async with transaction(conn):
            job = await core_tasks.add.enqueue(a=20, b=22, _connection=conn)
            await aio_as_trio(conn.execute)("CREATE TABLE caller_side_effect (x int)")
            inside = await aio_as_trio(conn.fetchval)("SELECT count(*) FROM fairchild_jobs WHERE id = $1", job.id)
            if not commit:
                raise Rollback
    except Rollback:
        pass
    return job, inside


async def test_transactional_enqueue_commit_makes_the_job_run(fairchild, dsn, sql, start_worker):
    conn = await _own_connection(dsn)
    try:
        job, inside = await _enqueue_in_transaction(conn, commit=True)
    finally:
        await aio_as_trio(conn.close)()
    assert inside == 1
    assert await count(sql) == 1
    await start_worker(concurrency=2)
    done = await fairchild.wait(job, timeout=10)
    assert done.state is JobState.COMPLETED and done.result == 42


async def test_transactional_enqueue_rollback_leaves_nothing(fairchild, dsn, sql, start_worker):
    conn = await _own_connection(dsn)
    try:
        job, inside = await _enqueue_in_transaction(conn, commit=False)
        assert inside == 1  # visible inside the caller's transaction
    finally:
        await aio_as_trio(conn.close)()
    assert await count(sql) == 0
    assert (await sql("SELECT to_regclass('caller_side_effect') AS t"))[0]["t"] is None
    # A worker running afterwards claims nothing, and a new job still works.
    pool = await start_worker(concurrency=2)
    probe = await core_tasks.add.enqueue(a=1, b=1)
    await fairchild.wait(probe, timeout=10)
    assert await count(sql) == 1
    assert await count(sql, "attempt > 0") == 1
    with pytest.raises(JobNotFound):
        await fairchild.get_job(job.id)
    assert pool.running_jobs == []


async def test_transactional_enqueue_many_rolls_back_with_the_caller(fairchild, dsn, sql):
    conn = await _own_connection(dsn)
    try:
        with pytest.raises(Rollback):
            async with transaction(conn):
                jobs = await core_tasks.add.enqueue_many([{"a": i, "b": 1} for i in range(3)], _connection=conn)
                assert len(jobs) == 3
                raise Rollback
    finally:
        await aio_as_trio(conn.close)()
    assert await count(sql) == 0


async def test_a_cancelled_caller_transaction_rolls_back_and_leaves_the_connection_idle(fairchild, dsn, sql):
    conn = await _own_connection(dsn)
    try:
        with trio.move_on_after(0.3) as scope:
            async with transaction(conn):
                await core_tasks.add.enqueue(a=1, b=2, _connection=conn)
                await aio_as_trio(conn.execute)("SELECT pg_sleep(5)")  # cancelled mid-statement
        assert scope.cancelled_caught
        assert not conn.is_in_transaction()
        assert await aio_as_trio(conn.fetchval)("SELECT 1") == 1  # not an aborted transaction
    finally:
        await aio_as_trio(conn.close)()
    assert await count(sql) == 0
