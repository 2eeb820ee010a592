"""Running jobs in an in-process WorkerPool: priorities, retries, discard, timeouts,
sync/async tasks, unknown tasks, the claim index, cancellation inside a unit of work."""

from __future__ import annotations

import uuid

import asyncpg
import trio
from trio_asyncio import aio_as_trio

import core_tasks
from fairchild import JobState
from fairchild.db import queries as q


async def scalar(sql, statement: str, *args):
    return (await sql(statement, *args))[0][0]


async def test_sync_and_async_tasks_complete_with_results(fairchild, sql, start_worker):
    sync_job = await core_tasks.add.enqueue(a=2, b=3)
    async_job = await core_tasks.async_add.enqueue(a=4, b=5)
    plain = await core_tasks.no_result.enqueue(x=1)
    await start_worker(concurrency=4, queues=["default", "core_other"])
    assert (await fairchild.wait(sync_job, timeout=10)).result == 5
    done = await fairchild.wait(async_job, timeout=10)
    assert (done.state, done.result, done.attempt) == (JobState.COMPLETED, 9, 1)
    assert done.finished_at is not None and done.attempted_at is not None
    assert (await fairchild.wait(plain, timeout=10)).result is None  # not a Record: nothing stored
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state = 'completed'") == 3


async def test_lower_priority_number_runs_first(fairchild, sql, start_worker):
    order = [7, 0, 9, 3, 5, 1, 8, 2, 6, 4]
    jobs = [await core_tasks.order_probe.enqueue(n=p, _priority=p) for p in order]
    await start_worker(concurrency=1)
    for job in jobs:
        await fairchild.wait(job, timeout=10)
    rows = await sql("SELECT priority FROM fairchild_jobs ORDER BY attempted_at, id")
    assert [r["priority"] for r in rows] == list(range(10))


async def test_worker_only_claims_its_queues(fairchild, sql, start_worker):
    mine = await core_tasks.add.enqueue(a=1, b=1, _queue="mine")
    other = await core_tasks.add.enqueue(a=1, b=1, _queue="not_mine")
    await start_worker(concurrency=2, queues=["mine"])
    await fairchild.wait(mine, timeout=10)
    assert (await fairchild.get_job(other)).state is JobState.AVAILABLE


async def test_retries_with_backoff_then_completes(fairchild, sql, start_worker):
    key = f"flaky-{uuid.uuid4()}"
    job = await core_tasks.flaky.enqueue(key=key, failures=2)
    await start_worker(concurrency=2, poll_interval=0.1)
    done = await fairchild.wait(job, timeout=10)
    assert done.state is JobState.COMPLETED
    assert done.attempt == 3
    assert done.result == {"calls": 3}
    assert [e["attempt"] for e in done.errors] == [1, 2]
    for n, entry in enumerate(done.errors, start=1):
        assert {"attempt", "kind", "error", "traceback", "at"} <= set(entry)
        assert entry["kind"] == "error"
        assert entry["error"] == f"ValueError: flaky failure {n} of {key}"
        assert "Traceback (most recent call last)" in entry["traceback"]
        assert "core_tasks.py" in entry["traceback"]


async def test_failed_attempt_is_retryable_with_a_backoff_delay(fairchild, sql, start_worker):
    key = f"flaky-{uuid.uuid4()}"
    job = await core_tasks.flaky.enqueue(key=key, failures=1)
    # A long backoff: after the first failure the job waits as 'retryable' in the future.
    await start_worker(concurrency=1, backoff=lambda attempt: 3600)
    with trio.fail_after(10):
        while (current := await fairchild.get_job(job)).state is not JobState.RETRYABLE:
            await trio.sleep(0.02)
    assert current.attempt == 1 and len(current.errors) == 1
    row = (await sql("SELECT scheduled_at - attempted_at AS delay FROM fairchild_jobs"))[0]
    assert row["delay"].total_seconds() > 3000
    # Make it due now: it runs and completes.
    await sql("UPDATE fairchild_jobs SET scheduled_at = now() - interval '1 second'")
    await sql("NOTIFY fairchild_insert, 'default'")
    done = await fairchild.wait(job, timeout=10)
    assert (done.state, done.attempt) == (JobState.COMPLETED, 2)


async def test_discarded_after_max_attempts(fairchild, sql, start_worker):
    job = await core_tasks.always_fails.enqueue(message="nope")
    await start_worker(concurrency=2, poll_interval=0.1)
    done = await fairchild.wait(job, timeout=10)
    assert done.state is JobState.DISCARDED
    assert done.attempt == done.max_attempts == 2
    assert [e["error"] for e in done.errors] == ["RuntimeError: nope"] * 2
    assert done.finished_at is not None


async def test_timeout_is_recorded_with_kind_timeout(fairchild, start_worker):
    job = await core_tasks.too_slow.enqueue()
    pool = await start_worker(concurrency=2)
    done = await fairchild.wait(job, timeout=10)
    assert done.state is JobState.DISCARDED
    (entry,) = done.errors
    assert entry["kind"] == "timeout"
    assert "0.2" in entry["error"]
    assert pool.running_jobs == []


async def test_sync_task_runs_in_a_thread_without_blocking_the_loop(fairchild, start_worker):
    key = f"ev-{uuid.uuid4()}"
    blocker = await core_tasks.sync_waits_for_loop.enqueue(key=key)
    await start_worker(concurrency=2)
    with trio.fail_after(10):
        while (await fairchild.get_job(blocker)).state is not JobState.RUNNING:
            await trio.sleep(0.02)
    # The sync task now blocks its thread; an async job must still run on the loop and
    # release it. Had the sync task blocked the loop, it would return False after 20 s.
    setter = await core_tasks.async_sets_event.enqueue(key=key)
    assert (await fairchild.wait(setter, timeout=15)).result is True
    assert (await fairchild.wait(blocker, timeout=15)).result is True


async def test_unknown_task_fails_the_job_and_the_worker_keeps_running(fairchild, sql, start_worker):
    ghost = core_tasks.add.prepare({"a": 1, "b": 2})
    ghost = type(ghost)(**{**{f: getattr(ghost, f) for f in ghost.__dataclass_fields__}, "task": "nowhere.ghost"})
    (job,) = await fairchild.insert_jobs([ghost])
    await start_worker(concurrency=2, poll_interval=0.1)
    done = await fairchild.wait(job, timeout=10)
    assert done.state is JobState.DISCARDED
    assert all(e["kind"] == "unknown_task" for e in done.errors)
    assert "unknown task 'nowhere.ghost'" in done.errors[-1]["error"]
    assert "--import" in done.errors[-1]["error"]
    after = await core_tasks.add.enqueue(a=5, b=5)
    assert (await fairchild.wait(after, timeout=10)).result == 10


async def test_hot_queries_use_their_indexes(fairchild, sql):
    # A realistic table: many finished jobs, a few claimable ones spread over queues.
    await sql("""
        INSERT INTO fairchild_jobs (id, task, queue, state, priority, workflow_id, scheduled_at, finished_at)
        SELECT gen_random_uuid(), 't', 'q' || (i % 20),
               CASE WHEN i % 50 = 0 THEN 'available' ELSE 'completed' END, i % 10,
               gen_random_uuid(), now(), CASE WHEN i % 50 = 0 THEN NULL ELSE now() END
        FROM generate_series(1, 5000) AS i
    """)
    await sql("UPDATE fairchild_jobs SET workflow_id = id")
    await sql("ANALYZE fairchild_jobs")

    async def plan(statement: str, *args) -> str:
        async def explain(pool):
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch("EXPLAIN " + statement, *args)
                return "\n".join(r[0] for r in rows)

        return await fairchild.database.call(explain)

    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    worker = uuid.uuid4()
    assert "fairchild_jobs_claim_idx" in await plan(q.CLAIM_QUEUES, now, 10, worker, ["q0", "q10"])
    assert "fairchild_jobs_claim_any_idx" in await plan(q.CLAIM_ANY, now, 10, worker)
    assert "fairchild_jobs_due_idx" in await plan(q.NEXT_DUE_ANY)
    rescue = await plan(q.RESCUE_ORPHANS, now, 100)
    assert "fairchild_jobs_running_idx" in rescue or "fairchild_jobs_state_idx" in rescue, rescue
    await sql("UPDATE fairchild_jobs SET is_workflow = true WHERE priority = 0 AND queue = 'q0'")
    await sql("ANALYZE fairchild_jobs")
    assert "fairchild_jobs_workflows_idx" in await plan(q.WORKFLOWS_LIST, 50, 0)
    # EXPLAIN (without ANALYZE) claimed nothing.
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state = 'running'") == 0


async def test_cancellation_inside_a_unit_of_work_loses_nothing(fairchild, dsn, sql):
    """A claim blocked on a table lock is cancelled from Trio: the transaction rolls back,
    no job is left 'running', the pool's connections work and no backend sits in an
    aborted transaction."""
    jobs = await core_tasks.add.enqueue_many([{"a": i, "b": 0} for i in range(5)])
    locker = await aio_as_trio(asyncpg.connect)(dsn)
    try:
        tx = locker.transaction()
        await aio_as_trio(tx.start)()
        await aio_as_trio(locker.execute)("LOCK TABLE fairchild_jobs IN ACCESS EXCLUSIVE MODE")
        with trio.move_on_after(0.3) as scope:
            await fairchild.database.claim(uuid.uuid4(), None, 5, fairchild.clock())
        assert scope.cancelled_caught
        with trio.move_on_after(0.3) as scope:
            await core_tasks.add.enqueue(a=1, b=1)  # an insert blocked the same way
        assert scope.cancelled_caught
        with trio.CancelScope(shield=True):
            await aio_as_trio(tx.rollback)()
    finally:
        await aio_as_trio(locker.close)()
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state = 'running'") == 0
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE attempt > 0") == 0
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs") == len(jobs)
    assert await scalar(
        sql,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state IN ('idle in transaction (aborted)', 'idle in transaction')") == 0
    # Every pooled connection still works (use more than one at once).
    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(sql, "SELECT pg_sleep(0.01)")
    rows, _ = await fairchild.database.claim(uuid.uuid4(), None, 5, fairchild.clock())
    assert len(rows) == 5


async def test_claims_and_retries_announce_themselves_to_listeners_that_asked(fairchild, start_worker):
    """Dashboards hear about state changes that are neither inserts nor final states
    (a claim, a retry wait) on fairchild_state; workers never LISTEN there."""
    from fairchild.db import CHANNEL_STATE

    heard: list[str | None] = []
    arrived = trio.Event()

    def on_state(payload):
        heard.append(payload)
        if "retryable" in heard:
            arrived.set()

    listener = fairchild.database.listener
    with listener.subscribe(CHANNEL_STATE, on_state):
        await listener.ensure()
        job = await core_tasks.flaky.enqueue(key=f"state-{uuid.uuid4()}", failures=1)
        pool = await start_worker(concurrency=1, poll_interval=0.1)
        with trio.fail_after(10):
            await arrived.wait()
        assert (await fairchild.wait(job, timeout=10)).state is JobState.COMPLETED
    assert heard[0] == "running" and "retryable" in heard
    assert pool.running_jobs == []


async def test_a_listener_listens_only_to_channels_it_was_asked_for(dsn):
    from fairchild.db import CHANNEL_INSERT, Listener

    listener = Listener(dsn)
    try:
        with listener.subscribe(CHANNEL_INSERT, lambda payload: None):
            assert await listener.ensure() is True  # a new connection: poll
            assert await listener.ensure() is False
            channels = await aio_as_trio(listener._conn.fetch)("SELECT pg_listening_channels() AS c")
            assert [r["c"] for r in channels] == [CHANNEL_INSERT]
    finally:
        await listener.close()


async def test_claiming_pauses_while_the_completion_buffer_is_full(fairchild, dsn, sql, start_worker):
    """Outcomes that cannot be written keep their jobs' slots: with the completer blocked
    and its buffer full, the worker claims nothing more; once writes go through, all runs."""
    key = f"blocker-{uuid.uuid4()}"
    blocker = await core_tasks.gated.enqueue(key=key)
    pool = await start_worker(concurrency=2, completion_buffer=1, poll_interval=0.1)
    with trio.fail_after(10):
        while (await fairchild.get_job(blocker)).state is not JobState.RUNNING:
            await trio.sleep(0.02)
    # Hold the blocker's row so the completer's fenced write of its outcome must wait.
    locker = await aio_as_trio(asyncpg.connect)(dsn)
    try:
        tx = locker.transaction()
        await aio_as_trio(tx.start)()
        await aio_as_trio(locker.execute)("SELECT 1 FROM fairchild_jobs WHERE id = $1 FOR UPDATE", blocker.id)
        core_tasks.GATES[key].set()  # its outcome goes to the completer, which blocks on the row
        others = await core_tasks.add.enqueue_many([{"a": i, "b": 0} for i in range(6)])
        # One outcome fills the buffer; two more jobs finish and keep their slots; then nothing.
        with trio.fail_after(10):
            while await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state = 'running'") < 4:
                await trio.sleep(0.02)
        await trio.sleep(1.0)  # ten poll intervals: a worker that ignored the full buffer would claim
        assert len(pool.running_jobs) == 2
        assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state = 'available'") == 3
    finally:
        with trio.CancelScope(shield=True):
            await aio_as_trio(tx.rollback)()
            await aio_as_trio(locker.close)()
    for job in [blocker, *others]:
        assert (await fairchild.wait(job, timeout=10)).state is JobState.COMPLETED


async def test_a_worker_whose_queues_are_all_paused_shows_as_paused(fairchild, sql, start_worker):
    pool = await start_worker(queues=["core_a", "core_b"], concurrency=1, heartbeat_interval=0.1, lease=1.0)

    async def state() -> str:
        return await scalar(sql, "SELECT state FROM fairchild_workers WHERE id = $1", pool.id)

    async def becomes(expected: str) -> None:
        with trio.fail_after(5):
            while await state() != expected:
                await trio.sleep(0.05)

    await fairchild.pause_queue("core_a")
    await trio.sleep(0.5)  # five heartbeats: one queue still runs
    assert await state() == "running"
    await fairchild.pause_queue("core_b")
    await becomes("paused")
    await fairchild.resume_queue("core_a")
    await becomes("running")
