"""Workflow failure semantics: retries spawn anew, dead upstreams cancel their dependents
transitively, FutureNotReady inside the spawning job."""

from __future__ import annotations

import uuid

import pytest
import trio

import wf_tasks
from fairchild import JobState


async def scalar(sql, statement: str, *args):
    return (await sql(statement, *args))[0][0]


async def only(sql, fairchild, task: str):
    rows = await sql("SELECT id FROM fairchild_jobs WHERE task = $1", task)
    assert len(rows) == 1, (task, rows)
    return await fairchild.get_job(rows[0]["id"])


async def test_parent_failing_after_spawning_leaves_one_set_of_children(fairchild, sql, start_worker):
    await start_worker(concurrency=10, poll_interval=0.1)
    key = f"parent-{uuid.uuid4()}"
    root = await wf_tasks.fails_after_spawning.enqueue(key=key, children=4)
    done = await fairchild.wait(root, timeout=20)
    assert done.state is JobState.COMPLETED
    assert done.attempt == 2
    assert [e["error"] for e in done.errors] == ["RuntimeError: failing after spawning"]
    assert done.result == [0, 1, 2, 3]
    # Only the successful attempt's children exist: 4 values + 1 collect.
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1", root.id) == 5
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs") == 6
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges") == 4


async def test_discarded_upstream_cancels_its_chain_and_fails_the_parent(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.failing_chain.enqueue()
    done = await fairchild.wait(root, timeout=20)

    bad = await only(sql, fairchild, wf_tasks.broken.name)
    first = await only(sql, fairchild, wf_tasks.add_one.name)
    second = await only(sql, fairchild, wf_tasks.double.name)
    third = await only(sql, fairchild, wf_tasks.join.name)
    ok = await only(sql, fairchild, wf_tasks.value.name)

    assert bad.state is JobState.DISCARDED
    assert bad.errors[-1]["error"] == "ValueError: broken upstream 1"
    for job in (first, second, third):
        assert job.state is JobState.CANCELLED, job
        assert job.attempt == 0  # never ran
        assert job.finished_at is not None
    assert first.cancel_reason == f"upstream {bad.id} ({bad.task}) was discarded"
    # Transitively: each dependent names its own (cancelled) upstream.
    assert second.cancel_reason == f"upstream {first.id} ({first.task}) was cancelled"
    assert third.cancel_reason.startswith("upstream ") and "was cancelled" in third.cancel_reason
    assert ok.state is JobState.COMPLETED

    assert done.state is JobState.DISCARDED
    entry = done.errors[-1]
    assert entry["kind"] == "child_failed"
    assert str(bad.id) in entry["error"] and bad.task in entry["error"] and "discarded" in entry["error"]
    assert await scalar(
        sql, "SELECT count(*) FROM fairchild_jobs WHERE state NOT IN ('completed', 'discarded', 'cancelled')") == 0


async def test_upstream_discarded_before_a_top_level_dependent_is_enqueued(fairchild, sql, start_worker):
    await start_worker(concurrency=4)
    bad = await fairchild.wait(await wf_tasks.broken.enqueue(v=2), timeout=20)
    assert bad.state is JobState.DISCARDED
    late = await wf_tasks.add_one.enqueue(v=bad)
    assert late.state is JobState.CANCELLED
    assert late.cancel_reason == f"upstream {bad.id} ({bad.task}) was discarded"
    assert late.attempt == 0


@pytest.mark.parametrize("task_name", ["reads_future", "awaits_future", "bools_future"])
async def test_reading_a_future_inside_the_spawning_job_fails_that_job(fairchild, sql, start_worker, task_name):
    await start_worker(concurrency=4, poll_interval=0.1)  # quick retries
    t = getattr(wf_tasks, task_name)
    job = await fairchild.wait(await t.enqueue(), timeout=20)
    assert job.state is JobState.DISCARDED
    assert len(job.errors) == job.max_attempts == 3
    entry = job.errors[-1]
    assert entry["error"].startswith("FutureNotReady: the result of job ")
    assert "does not exist yet" in entry["error"]
    assert "FutureNotReady" in entry["traceback"]
    # A failed job spawned nothing.
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1", job.id) == 0
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs") == 1


async def test_retries_of_an_upstream_keep_its_dependents_waiting(fairchild, sql, start_worker):
    import core_tasks

    key = f"upstream-{uuid.uuid4()}"
    upstream = await core_tasks.flaky.enqueue(key=key, failures=2)
    downstream = await wf_tasks.show.enqueue(data={"from": upstream})
    assert downstream.state is JobState.BLOCKED
    await start_worker(concurrency=4, poll_interval=0.1)
    done = await fairchild.wait(downstream, timeout=20)
    assert done.state is JobState.COMPLETED and done.attempt == 1
    assert done.result == {"from": {"calls": 3}}
    up = await fairchild.get_job(upstream)
    assert up.attempt == 3 and len(up.errors) == 2
    assert done.attempted_at >= up.finished_at


async def test_a_failure_deep_in_a_nested_workflow_reaches_the_root(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.fragile_run.enqueue(failing_batch=1)
    done = await fairchild.wait(root, timeout=20)
    assert await scalar(
        sql, "SELECT count(*) FROM fairchild_jobs WHERE state NOT IN ('completed', 'discarded', 'cancelled')") == 0
    states = {
        (r["task"].rsplit(".", 1)[1], r["state"]): r["n"]
        for r in await sql("SELECT task, state, count(*) AS n FROM fairchild_jobs GROUP BY task, state")
    }
    assert states == {
        ("fragile_run", "discarded"): 1,
        ("fragile_batch", "completed"): 2,
        ("fragile_batch", "discarded"): 1,      # its child failed
        ("fragile_item", "completed"): 8,
        ("fragile_item", "discarded"): 1,
        ("aggregate", "completed"): 2,
        ("aggregate", "cancelled"): 1,          # upstream item discarded
        ("final_summary", "cancelled"): 1,      # upstream batch discarded
    }
    (bad_item,) = await sql("SELECT id, parent_id FROM fairchild_jobs WHERE state = 'discarded' AND task LIKE '%fragile_item'")
    batch = await fairchild.get_job(bad_item["parent_id"])
    assert batch.errors[-1]["kind"] == "child_failed"
    assert str(bad_item["id"]) in batch.errors[-1]["error"]
    assert done.state is JobState.DISCARDED
    assert done.errors[-1]["kind"] == "child_failed"
    # The root names the child that failed it: the batch, or the summary cancelled because of it.
    assert str(batch.id) in done.errors[-1]["error"] or "final_summary" in done.errors[-1]["error"]
    assert all(j.workflow_id == root.id for j in (await fairchild.get_workflow(root))["jobs"])


async def test_a_blocked_job_scheduled_for_later_waits_for_both(fairchild, sql, start_worker):
    from datetime import datetime, timedelta, timezone

    upstream = await wf_tasks.value.enqueue(v=1)
    when = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    downstream = await wf_tasks.add_one.enqueue(v=upstream, _scheduled_at=when)
    assert downstream.state is JobState.BLOCKED
    await start_worker(concurrency=2, poll_interval=0.1)
    await fairchild.wait(upstream, timeout=20)  # the whole workflow, downstream included
    done = await fairchild.get_job(downstream)
    assert (done.state, done.result) == (JobState.COMPLETED, 2)
    assert done.attempted_at >= when


async def test_a_dependent_whose_upstream_was_pruned_fails_with_a_clear_error(fairchild, sql, start_worker):
    upstream = await wf_tasks.value.enqueue(v=1)
    await start_worker(concurrency=2, poll_interval=0.1)
    assert (await fairchild.wait(upstream, timeout=10)).result == 1
    await fairchild.pause_queue("default")  # hold the dependent until its upstream is gone
    downstream = await wf_tasks.double.enqueue(v=upstream)
    await sql("DELETE FROM fairchild_jobs WHERE id = $1", upstream.id)  # what retention does
    await fairchild.resume_queue("default")
    done = await fairchild.wait(downstream, timeout=10)
    assert done.state is JobState.DISCARDED
    kinds = {e["kind"] for e in done.errors}
    assert kinds == {"upstream_missing"}
    assert str(upstream.id) in done.errors[-1]["error"]


async def test_retrying_a_failed_upstream_and_its_cancelled_dependent_resumes_the_chain(fairchild, sql, start_worker):
    import core_tasks

    key = f"resume-{uuid.uuid4()}"
    upstream = await core_tasks.flaky.enqueue(key=key, failures=3)  # fails all 3 attempts
    dependent = await wf_tasks.value.enqueue(v=upstream)
    await start_worker(concurrency=2, poll_interval=0.1)
    assert (await fairchild.wait(upstream, timeout=10)).state is JobState.DISCARDED
    cancelled = await fairchild.wait(dependent, timeout=10)
    assert cancelled.state is JobState.CANCELLED and str(upstream.id) in cancelled.cancel_reason

    # The dependent first: it waits for its upstream instead of running without its value.
    again = await fairchild.retry_job(dependent)
    assert again.state is JobState.BLOCKED and again.deps_pending == 1
    await fairchild.retry_job(upstream)  # the 4th call of `flaky` succeeds
    assert (await fairchild.wait(upstream, timeout=10)).result == {"calls": 4}
    done = await fairchild.wait(dependent, timeout=10)
    assert done.state is JobState.COMPLETED and done.result == {"calls": 4}


async def test_a_parent_cannot_run_again_while_children_of_its_last_attempt_run(fairchild, sql, start_worker):
    import core_tasks

    from fairchild import InvalidJobState

    key = f"parent-{uuid.uuid4()}"
    parent = await core_tasks.spawns_a_failure_and_a_wait.enqueue(key=key)
    await start_worker(concurrency=4, poll_interval=0.1)
    with trio.fail_after(10):  # not fairchild.wait: for a root it also waits for the slow child
        while (failed := await fairchild.get_job(parent)).state is not JobState.DISCARDED:
            await trio.sleep(0.05)
    assert failed.errors[-1]["kind"] == "child_failed"
    with pytest.raises(InvalidJobState, match="1 unfinished children"):
        await fairchild.retry_job(parent)
    core_tasks.GATES.setdefault(key, trio.Event()).set()  # the slow child finishes
    with trio.fail_after(10):
        while await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1 "
                                "AND state NOT IN ('completed', 'discarded', 'cancelled')", parent.id):
            await trio.sleep(0.05)
    again = await fairchild.retry_job(parent)
    assert again.state is JobState.AVAILABLE
