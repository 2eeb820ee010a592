"""The `fairchild` command, run as a subprocess (`python -m fairchild`)."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import trio

from core_helpers import FAIRCHILD_CMD, worker_env
from fairchild import __version__


async def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return await trio.run_process(
        [*FAIRCHILD_CMD, *args], capture_stdout=True, capture_stderr=True, check=False,
        env=env if env is not None else worker_env("postgresql://nobody@/nowhere"),
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, result.stderr.decode()
    assert lines[0].startswith("fairchild: error: ")
    return lines[0]


async def count_jobs(sql) -> int:
    return (await sql("SELECT count(*) FROM fairchild_jobs"))[0][0]


async def test_version_and_help():
    version = await cli("--version")
    assert version.returncode == 0
    assert version.stdout.decode().strip() == __version__
    helped = await cli("--help")
    assert helped.returncode == 0
    text = helped.stdout.decode()
    for command in ("worker", "enqueue", "run", "install", "migrate"):
        assert command in text
    worker_help = await cli("worker", "--help")
    assert worker_help.returncode == 0
    for flag in ("--import", "--queues", "--concurrency"):
        assert flag in worker_help.stdout.decode()


async def test_bad_flags_and_values_exit_2_with_one_line():
    results = {}

    async def run(key, *args):
        results[key] = await cli(*args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "flag", "worker", "--bogus")
        nursery.start_soon(run, "value", "worker", "--concurrency", "ten")
        nursery.start_soon(run, "zero", "worker", "--concurrency", "0")
        nursery.start_soon(run, "kv", "run", "core_tasks.greet", "-a", "novalue")
        nursery.start_soon(run, "command", "frobnicate")
        nursery.start_soon(run, "duration", "enqueue", "core_tasks.add", "--in", "soon")
        nursery.start_soon(run, "at", "enqueue", "core_tasks.add", "--at", "2030-01-01T00:00:00")
        nursery.start_soon(run, "priority", "enqueue", "core_tasks.add", "-a", "a=1", "-a", "b=2", "--priority", "12")
    for key, result in results.items():
        assert result.returncode == 2, (key, result)
        assert result.stdout == b"", key
        one_error_line(result)
    assert "--concurrency" in one_error_line(results["value"])
    assert "novalue" in one_error_line(results["kv"])
    assert "--in" in one_error_line(results["duration"])
    assert "zone" in one_error_line(results["at"])
    assert "priority" in one_error_line(results["priority"])


async def test_enqueue_with_json_args_and_key_values(dsn, fairchild, sql):
    env = worker_env(dsn)
    by_json = await cli("enqueue", "core_tasks.add", "--args", '{"a": 1, "b": 2}', env=env)
    assert by_json.returncode == 0, by_json.stderr.decode()
    printed = json.loads(by_json.stdout)
    job = await fairchild.get_job(uuid.UUID(printed["id"]))
    assert job.args == {"a": 1, "b": 2} and job.state.value == "available"
    assert printed["task"] == "core_tasks.add" and printed["state"] == "available"

    by_kv = await cli("enqueue", "core_tasks.greet", "-a", "name=World", "-a", "punctuation=?!",
                      "--queue", "high", "--priority", "1", env=env)
    assert by_kv.returncode == 0, by_kv.stderr.decode()
    job = await fairchild.get_job(json.loads(by_kv.stdout)["id"])
    assert job.args == {"name": "World", "punctuation": "?!"}
    assert (job.queue, job.priority) == ("high", 1)

    typed = await cli("enqueue", "core_tasks.add", "-a", "a=40", "--arg", "b=2", env=env)
    assert (await fairchild.get_job(json.loads(typed.stdout)["id"])).args == {"a": 40, "b": 2}
    assert await count_jobs(sql) == 3


async def test_enqueue_in_and_at(dsn, fairchild):
    env = worker_env(dsn)
    before = datetime.now(timezone.utc)
    later = await cli("enqueue", "core_tasks.add", "-a", "a=1", "-a", "b=1", "--in", "5m", env=env)
    assert later.returncode == 0, later.stderr.decode()
    job = await fairchild.get_job(json.loads(later.stdout)["id"])
    assert job.state.value == "scheduled"
    assert before + timedelta(minutes=5) <= job.scheduled_at <= datetime.now(timezone.utc) + timedelta(minutes=5)
    at = await cli("enqueue", "core_tasks.add", "-a", "a=1", "-a", "b=1", "--at", "2030-01-15T10:00:00Z", env=env)
    job = await fairchild.get_job(json.loads(at.stdout)["id"])
    assert job.scheduled_at == datetime(2030, 1, 15, 10, 0, tzinfo=timezone.utc)


async def test_enqueue_unknown_task_or_bad_arguments_exit_2_and_insert_nothing(dsn, sql):
    env = worker_env(dsn)
    unknown = await cli("enqueue", "core_tasks.nope", "-a", "x=1", env=env)
    assert unknown.returncode == 2
    assert "unknown task 'core_tasks.nope'" in one_error_line(unknown)
    no_module = await cli("enqueue", "no_such_module.task", env=env)
    assert no_module.returncode == 2
    one_error_line(no_module)
    missing = await cli("enqueue", "core_tasks.add", "-a", "a=1", env=env)
    assert missing.returncode == 2
    assert "'b'" in one_error_line(missing)
    bad_json = await cli("enqueue", "core_tasks.add", "--args", "{nope", env=env)
    assert bad_json.returncode == 2
    assert "--args" in one_error_line(bad_json)
    assert await count_jobs(sql) == 0


async def test_run_prints_the_result():
    result = await cli("run", "-i", "core_tasks", "core_tasks.greet", "-a", "name=World")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == "Hello, World!"
    added = await cli("run", "core_tasks.add", "-a", "a=2", "-a", "b=3")
    assert json.loads(added.stdout) == 5


async def test_run_prints_a_full_traceback_on_error():
    result = await cli("run", "core_tasks.boom", "-a", "depth=3")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "Traceback (most recent call last)" in err
    assert "in boom" in err and "in _explode" in err  # the whole stack, down to the raise
    assert err.strip().endswith("ValueError: exploded at depth 3")
    assert result.stdout == b""


async def test_run_a_workflow_directly():
    """Tasks called inside `fairchild run` run directly too, sync and async mixed."""
    results = {}

    async def run(key, *args):
        results[key] = await cli("run", *args)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "fanout", "wf_tasks.orchestrator", "-a", "items=[1,2,3]")
        nursery.start_soon(run, "portfolio", "wf_tasks.portfolio_value", "-a", 'symbols=["AAPL","MSFT"]')
        nursery.start_soon(run, "diamond", "wf_tasks.diamond", "-a", "n=5")
    for key, result in results.items():
        assert result.returncode == 0, (key, result.stderr.decode())
    assert json.loads(results["fanout"].stdout) == {"spawned": 4}
    assert json.loads(results["portfolio"].stdout) == {"total": 600.75}
    assert json.loads(results["diamond"].stdout) == {"a": 6, "b": 10, "sum": 16}
