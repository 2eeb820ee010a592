"""Four `fairchild worker` processes race on the same fan-ins: each fan-in runs once."""

from __future__ import annotations

import signal

import trio

import wf_tasks
from core_helpers import FAIRCHILD_CMD, worker_env


async def scalar(sql, statement: str, *args):
    return (await sql(statement, *args))[0][0]


async def until(predicate, timeout: float = 60, interval: float = 0.1):
    """Wait (not assert) until `await predicate()` is true."""
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(interval)


async def _run_worker(dsn, log, race_dir, task_status=trio.TASK_STATUS_IGNORED):
    with open(log, "ab") as out:
        proc = await trio.lowlevel.open_process(
            [*FAIRCHILD_CMD, "worker", "--import", "wf_tasks", "--concurrency", "10",
             "--heartbeat-interval", "0.5", "--lease", "3", "--poll-interval", "0.5"],
            env=worker_env(dsn, WF_RACE_DIR=str(race_dir)), stdout=out, stderr=out)
    try:
        task_status.started(proc)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


async def test_four_workers_racing_on_fan_ins_run_each_exactly_once(dsn, fairchild, sql, tmp_path):
    race_dir = tmp_path / "race"
    race_dir.mkdir()
    workflows, width = 30, 20
    async with trio.open_nursery() as nursery:
        procs = [await nursery.start(_run_worker, dsn, tmp_path / f"w{i}.log", race_dir) for i in range(4)]

        async def registered() -> bool:
            return await scalar(sql, "SELECT count(*) FROM fairchild_workers") == 4

        await until(registered)
        roots = await wf_tasks.race_fan_out.enqueue_many(
            [{"tag": f"wf{i}", "n": width} for i in range(workflows)])
        for root in roots:
            done = await fairchild.wait(root, timeout=60)
            assert done.result == sum(range(width))
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"w{i}.log").read_text()

    rows = []
    for path in race_dir.iterdir():
        for line in path.read_text().splitlines():
            tag, total = line.split()
            rows.append((tag, int(total), int(path.name)))
    await sql("CREATE TABLE fan_in_runs (tag text NOT NULL, total int NOT NULL, pid int NOT NULL)")

    async def copy(pool):
        async with pool.acquire() as conn:
            await conn.copy_records_to_table("fan_in_runs", records=rows, columns=["tag", "total", "pid"])

    await fairchild.database.call(copy)
    assert await scalar(sql, "SELECT count(*) FROM fan_in_runs") == workflows
    assert await scalar(sql, "SELECT count(DISTINCT tag) FROM fan_in_runs") == workflows
    assert await scalar(sql, "SELECT count(*) FROM fan_in_runs WHERE total <> $1", sum(range(width))) == 0
    assert await scalar(sql, """
        SELECT count(*) FROM fairchild_jobs
        WHERE task = $1 AND state = 'completed' AND attempt = 1""", wf_tasks.race_fan_in.name) == workflows
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state <> 'completed'") == 0
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE attempt <> 1") == 0
    # The children really were spread over the processes (they raced).
    assert await scalar(sql, "SELECT count(DISTINCT worker_id) FROM fairchild_jobs") >= 2
