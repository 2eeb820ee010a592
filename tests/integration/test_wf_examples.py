"""Dynamic workflows: the README's examples (in Trio form) and other shapes reach their
documented results; edges, workflow ids and `wait(root)` are checked in SQL."""

from __future__ import annotations

from datetime import timedelta

import wf_tasks
from fairchild import Future, JobState


async def jobs_of(sql, task: str, workflow_id=None):
    if workflow_id is None:
        return await sql("SELECT * FROM fairchild_jobs WHERE task = $1 ORDER BY inserted_at, id", task)
    return await sql(
        "SELECT * FROM fairchild_jobs WHERE task = $1 AND workflow_id = $2 ORDER BY inserted_at, id",
        task, workflow_id)


async def scalar(sql, statement: str, *args):
    return (await sql(statement, *args))[0][0]


async def assert_whole_workflow_final(sql, root_id):
    assert await scalar(
        sql,
        "SELECT count(*) FROM fairchild_jobs WHERE workflow_id = $1 "
        "AND state NOT IN ('completed', 'discarded', 'cancelled')", root_id) == 0
    # Every job carries the root's id as its workflow id: nothing escaped to another workflow.
    assert await scalar(
        sql, "SELECT count(*) FROM fairchild_jobs WHERE workflow_id <> $1", root_id) == 0


async def test_readme_basic_example(fairchild, sql, start_worker):
    await start_worker(concurrency=4)
    root = await wf_tasks.basic_orchestrator.enqueue()
    done = await fairchild.wait(root, timeout=20)
    assert (done.state, done.result) == (JobState.COMPLETED, {"started": True})
    (processed,) = await jobs_of(sql, wf_tasks.process.name)
    (fetched,) = await jobs_of(sql, wf_tasks.fetch_data.name)
    result = (await fairchild.get_job(processed["id"])).result
    assert result == {"processed": True, "items_seen": 3, "from": "https://api.example.com/data"}
    assert processed["attempted_at"] >= fetched["finished_at"]
    assert [tuple(r) for r in await sql("SELECT upstream_id, downstream_id FROM fairchild_edges")] == [
        (fetched["id"], processed["id"])]
    await assert_whole_workflow_final(sql, root.id)


async def test_readme_fan_out_fan_in_sums_to_12(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.orchestrator.enqueue(items=[1, 2, 3])
    done = await fairchild.wait(root, timeout=20)
    assert done.state is JobState.COMPLETED
    assert done.result == {"spawned": 4}
    await assert_whole_workflow_final(sql, root.id)
    (total,) = await jobs_of(sql, wf_tasks.sum_results.name)
    assert total["state"] == "completed"
    job = await fairchild.get_job(total["id"])
    assert job.result == 12
    assert job.parent_id == root.id and job.workflow_id == root.id
    multiplies = await jobs_of(sql, wf_tasks.multiply.name)
    assert sorted(m["id"] for m in multiplies) == sorted(
        r["upstream_id"] for r in await sql(
            "SELECT upstream_id FROM fairchild_edges WHERE downstream_id = $1", total["id"]))
    assert {(await fairchild.get_job(m["id"])).result for m in multiplies} == {2, 4, 6}
    assert all(m["parent_id"] == root.id for m in multiplies)


async def test_readme_portfolio_value(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.portfolio_value.enqueue(symbols=["AAPL", "MSFT", "GOOG"])
    done = await fairchild.wait(root, timeout=20)
    # portfolio_value returns calculate_total's Future: it completes with that value.
    assert done.state is JobState.COMPLETED
    assert done.result == {"total": 190.5 + 410.25 + 140.0}
    await assert_whole_workflow_final(sql, root.id)
    (calc,) = await jobs_of(sql, wf_tasks.calculate_total.name)
    assert calc["finished_at"] <= done.finished_at


async def test_readme_nested_batches(fairchild, sql, start_worker):
    await start_worker(concurrency=20)
    root = await wf_tasks.run_all_batches.enqueue()
    done = await fairchild.wait(root, timeout=30)
    n = wf_tasks.ITEMS_PER_BATCH
    expected_batches = [sum(2 * (b * 100 + i) for i in range(n)) for b in range(10)]
    assert done.state is JobState.COMPLETED
    assert done.result == {"batches": 10, "values": expected_batches, "total": sum(expected_batches)}
    await assert_whole_workflow_final(sql, root.id)
    # final_summary received the 10 aggregate values, in the order of the futures.
    (summary,) = await jobs_of(sql, wf_tasks.final_summary.name)
    assert (await fairchild.get_job(summary["id"])).result["values"] == expected_batches
    batches = await jobs_of(sql, wf_tasks.process_batch.name)
    assert len(batches) == 10 and all(b["parent_id"] == root.id for b in batches)
    for batch in batches:
        b = await fairchild.get_job(batch["id"])
        assert b.state is JobState.COMPLETED
        assert b.result == expected_batches[b.args["batch_id"]]  # the aggregate's value
        assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1", b.id) == n + 1
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs") == 1 + 10 * (n + 2) + 1


async def test_diamond(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.diamond.enqueue(n=5)
    done = await fairchild.wait(root, timeout=20)
    assert done.result == {"a": 6, "b": 10, "sum": 16}
    (source,) = await jobs_of(sql, wf_tasks.value.name)
    # source feeds two jobs; each of them feeds the join: 4 edges in all.
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges WHERE upstream_id = $1", source["id"]) == 2
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges") == 4
    await assert_whole_workflow_final(sql, root.id)


async def test_fan_out_of_1000_children_into_one_fan_in(fairchild, sql, start_worker):
    await start_worker(concurrency=50)
    root = await wf_tasks.fan_out.enqueue(n=1000)
    done = await fairchild.wait(root, timeout=60)
    assert done.state is JobState.COMPLETED
    assert done.result == list(range(1000))  # all values, in the order of the futures
    (fan_in,) = await jobs_of(sql, wf_tasks.collect.name)
    assert fan_in["attempt"] == 1
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges WHERE downstream_id = $1", fan_in["id"]) == 1000
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1", root.id) == 1001
    await assert_whole_workflow_final(sql, root.id)


async def test_futures_inside_nested_lists_and_dicts(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.nested_args.enqueue()
    done = await fairchild.wait(root, timeout=20)
    assert done.result == {"list": [1, [2, {"deep": 1}]], "dict": {"x": 2, "y": [1, "two", None]}, "plain": 3}
    (show,) = await jobs_of(sql, wf_tasks.show.name)
    # Two distinct upstreams, each one edge however often it is used.
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges WHERE downstream_id = $1", show["id"]) == 2


async def test_job_handles_passed_to_enqueue_create_edges(fairchild, sql, start_worker):
    first = await wf_tasks.value.enqueue(v=20)
    second = await wf_tasks.add_one.enqueue(v=first)
    third = await wf_tasks.join.enqueue(a=first, b=second)
    assert second.state is JobState.BLOCKED and third.state is JobState.BLOCKED
    assert second.workflow_id == first.id and third.workflow_id == first.id
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges") == 3
    await start_worker(concurrency=4)
    done = await fairchild.wait(third, timeout=20)
    assert done.result == {"a": 20, "b": 21, "sum": 41}
    # wait(root) waits for everything downstream of it (the same workflow).
    await fairchild.wait(first, timeout=20)
    await assert_whole_workflow_final(sql, first.id)


async def test_future_of_a_job_completed_long_ago(fairchild, sql, start_worker):
    await start_worker(concurrency=4)
    old = await fairchild.wait(await wf_tasks.value.enqueue(v=41), timeout=20)
    await sql("UPDATE fairchild_jobs SET finished_at = finished_at - interval '30 days', "
              "inserted_at = inserted_at - interval '30 days' WHERE id = $1", old.id)
    later = await wf_tasks.add_one.enqueue(v=Future(old.id, old.task))
    assert later.state is JobState.AVAILABLE  # nothing to wait for
    assert later.workflow_id == old.id
    assert (await fairchild.wait(later, timeout=20)).result == 42
    assert await scalar(sql, "SELECT count(*) FROM fairchild_edges WHERE upstream_id = $1", old.id) == 1


async def test_wait_on_the_root_returns_once_the_whole_workflow_is_final(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.run_all_batches.enqueue()
    done = await fairchild.wait(root, timeout=30)
    assert done.state.is_final
    await assert_whole_workflow_final(sql, root.id)
    last = await scalar(sql, "SELECT max(finished_at) FROM fairchild_jobs WHERE workflow_id = $1", root.id)
    assert done.finished_at == last


async def test_sync_and_async_tasks_spawn_children(fairchild, sql, start_worker):
    await start_worker(concurrency=10)
    # orchestrator is sync (runs in a worker thread); async_spawner runs on the Trio thread.
    sync_root = await wf_tasks.orchestrator.enqueue(items=[5])
    async_root = await wf_tasks.async_spawner.enqueue(n=4)
    assert (await fairchild.wait(sync_root, timeout=20)).result == {"spawned": 2}
    assert (await fairchild.wait(async_root, timeout=20)).result == [0, 2, 4, 6]
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1", sync_root.id) == 2
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE parent_id = $1", async_root.id) == 5


async def test_get_and_list_workflows(fairchild, sql, start_worker):
    single = await wf_tasks.value.enqueue(v=1)  # a lone job is not listed as a workflow
    pending = await wf_tasks.value.enqueue(v=2)
    blocked = await wf_tasks.add_one.enqueue(v=pending)
    listed = await fairchild.list_workflows()
    assert [w["workflow_id"] for w in listed] == [pending.id]
    (running,) = listed
    assert running["state"] == "running" and running["finished_at"] is None
    assert running["counts"] == {"available": 1, "blocked": 1} and running["total"] == 2
    assert running["root_task"] == wf_tasks.value.name

    await start_worker(concurrency=10)
    root = await wf_tasks.diamond.enqueue(n=1)
    await fairchild.wait(root, timeout=20)
    await fairchild.wait(pending, timeout=20)
    listed = await fairchild.list_workflows(limit=10)
    assert [w["workflow_id"] for w in listed] == [root.id, pending.id]
    assert all(w["state"] == "completed" for w in listed)
    assert listed[0]["counts"] == {"completed": 5} and listed[0]["finished_at"] is not None
    assert [w["workflow_id"] for w in await fairchild.list_workflows(limit=1, offset=1)] == [pending.id]

    wf = await fairchild.get_workflow(root.id)
    assert wf["workflow_id"] == root.id and wf["state"] == "completed"
    assert {j.task for j in wf["jobs"]} == {
        wf_tasks.diamond.name, wf_tasks.value.name, wf_tasks.add_one.name,
        wf_tasks.double.name, wf_tasks.join.name}
    assert wf["jobs"][0].id == root.id
    ids = {j.task: j.id for j in wf["jobs"]}
    assert sorted(wf["edges"]) == sorted([
        (ids[wf_tasks.value.name], ids[wf_tasks.add_one.name]),
        (ids[wf_tasks.value.name], ids[wf_tasks.double.name]),
        (ids[wf_tasks.add_one.name], ids[wf_tasks.join.name]),
        (ids[wf_tasks.double.name], ids[wf_tasks.join.name]),
    ])
    lone = await fairchild.get_workflow(single.id)
    assert lone["total"] == 1 and lone["edges"] == []
    assert (await fairchild.get_workflow(blocked.workflow_id))["total"] == 2


async def test_failed_workflow_state(fairchild, start_worker):
    await start_worker(concurrency=10)
    root = await wf_tasks.failing_chain.enqueue()
    await fairchild.wait(root, timeout=20)
    (wf,) = await fairchild.list_workflows()
    assert wf["state"] == "failed"
    assert (await fairchild.get_workflow(root.id))["state"] == "failed"
    assert wf["finished_at"] - wf["inserted_at"] < timedelta(minutes=1)
