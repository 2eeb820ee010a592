"""Real `fairchild worker` processes: queue flags, graceful shutdown on SIGTERM, and four
workers draining 4,000 jobs with every job run exactly once."""

from __future__ import annotations

import signal
from contextlib import asynccontextmanager
from pathlib import Path

import trio

import core_tasks
from core_helpers import FAIRCHILD_CMD, worker_env

FAST_FLAGS = ["--heartbeat-interval", "0.5", "--lease", "3", "--poll-interval", "0.5"]


@asynccontextmanager
async def worker_process(dsn: str, log: Path, *flags: str, **env: str):
    """A `fairchild worker --import core_tasks` subprocess; killed if still alive at exit."""
    with open(log, "ab") as out:
        proc = await trio.lowlevel.open_process(
            [*FAIRCHILD_CMD, "worker", "--import", "core_tasks", *FAST_FLAGS, *flags],
            env=worker_env(dsn, **env), stdout=out, stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


async def until(predicate, timeout: float = 30, interval: float = 0.05):
    """Wait (not assert) until `await predicate()` is true."""
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(interval)


async def scalar(sql, statement: str, *args):
    return (await sql(statement, *args))[0][0]


async def test_queues_flag_accepts_commas_and_repeats(dsn, sql, tmp_path):
    log = tmp_path / "worker.log"
    async with worker_process(dsn, log, "--queues", "a,b", "--queues", "c") as proc:
        await until(lambda: _worker_count(sql))
        (row,) = await sql("SELECT queues, pid FROM fairchild_workers")
        assert sorted(row["queues"]) == ["a", "b", "c"]
        assert row["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await proc.wait()
    assert code == 0, log.read_text()
    assert await scalar(sql, "SELECT count(*) FROM fairchild_workers") == 0


async def _worker_count(sql, n: int = 1) -> bool:
    return await scalar(sql, "SELECT count(*) FROM fairchild_workers") >= n


async def test_sigterm_lets_the_running_job_finish_then_exits_0(dsn, fairchild, sql, tmp_path):
    log = tmp_path / "worker.log"
    marks = tmp_path / "marks"
    job = await core_tasks.sleep_then_mark.enqueue(seconds=1.0, path=str(marks))
    async with worker_process(dsn, log, "--grace", "20", "--concurrency", "2") as proc:
        await until(lambda: _job_state_is(fairchild, job, "running"))
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):  # far below the 20 s grace: it exits once the job is done
            code = await proc.wait()
    assert code == 0, log.read_text()
    done = await fairchild.get_job(job)
    assert done.state.value == "completed" and done.result == "slept" and done.attempt == 1
    assert marks.read_text() == "started\ndone\n"
    assert await scalar(sql, "SELECT count(*) FROM fairchild_workers") == 0
    assert "Traceback" not in log.read_text()


async def _job_state_is(fairchild, job, state: str) -> bool:
    return (await fairchild.get_job(job)).state.value == state


async def test_four_workers_run_4000_jobs_exactly_once(dsn, fairchild, sql, tmp_path):
    """Each execution appends `n pid` to a per-process file (O_APPEND); the lines are then
    loaded into an `executions` table and everything is counted in SQL."""
    executions = tmp_path / "executions"
    executions.mkdir()
    total = 4000
    async with trio.open_nursery() as nursery:
        procs = []
        for i in range(4):
            procs.append(await nursery.start(_run_worker, dsn, tmp_path / f"w{i}.log", executions))
        await until(lambda: _worker_count(sql, 4))
        # All four are claiming before the jobs arrive: they race for them.
        await core_tasks.mark.enqueue_many([{"n": n} for n in range(total)])
        await until(lambda: _completed(sql, total), timeout=120, interval=0.2)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, (tmp_path / f"w{i}.log").read_text()

    rows = []
    for path in executions.iterdir():
        for line in path.read_text().splitlines():
            n, pid = line.split()
            rows.append((int(n), int(pid)))
    await sql("CREATE TABLE executions (n int NOT NULL, pid int NOT NULL)")
    await fairchild.database.call(_copy_executions, rows)

    assert await scalar(sql, "SELECT count(*) FROM executions") == total
    assert await scalar(sql, "SELECT count(DISTINCT n) FROM executions") == total
    assert await scalar(sql, "SELECT count(*) FROM (SELECT n FROM executions GROUP BY n HAVING count(*) > 1) d") == 0
    assert await scalar(sql, """
        SELECT count(*) FROM fairchild_jobs j JOIN executions e ON e.n = (j.args->>'n')::int
        WHERE j.state = 'completed' AND j.attempt = 1 AND j.result = to_jsonb(e.n)""") == total
    assert await scalar(sql, "SELECT count(*) FROM fairchild_jobs") == total
    # Every worker took part in the race (each had ~1,000 jobs to win).
    assert await scalar(sql, "SELECT count(DISTINCT pid) FROM executions") >= 2
    assert await scalar(sql, "SELECT count(*) FROM fairchild_workers") == 0


async def _copy_executions(pool, rows):
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("executions", records=rows, columns=["n", "pid"])


async def _completed(sql, total: int) -> bool:
    return await scalar(sql, "SELECT count(*) FROM fairchild_jobs WHERE state = 'completed'") >= total


async def _run_worker(dsn, log, executions, task_status=trio.TASK_STATUS_IGNORED):
    async with worker_process(dsn, log, "--concurrency", "20", "--grace", "10",
                              CORE_EXEC_DIR=str(executions)) as proc:
        task_status.started(proc)
        await proc.wait()
