"""Tasks for the issue-2 (core) tests. Importable as ``core_tasks`` both in the pytest
process and in `fairchild worker` subprocesses (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

import trio

from fairchild import Record, task

# In-process bookkeeping for tests that run the WorkerPool in the pytest process.
CALLS: defaultdict[str, int] = defaultdict(int)
EVENTS: defaultdict[str, threading.Event] = defaultdict(threading.Event)


@task()
def add(a: int, b: int):
    return Record(a + b)


@task(queue="core_other", priority=3, max_attempts=4, tags=["core", "math"])
async def async_add(a: int, b: int):
    await trio.sleep(0)
    return Record(a + b)


@task()
def no_result(x: int):
    return x  # not a Record: nothing stored


@task()
def order_probe(n: int):
    return Record(n)


@task(max_attempts=3)
def flaky(key: str, failures: int):
    """Fails `failures` times (per key, in this process), then succeeds."""
    CALLS[key] += 1
    if CALLS[key] <= failures:
        raise ValueError(f"flaky failure {CALLS[key]} of {key}")
    return Record({"calls": CALLS[key]})


@task(max_attempts=2)
def always_fails(message: str):
    raise RuntimeError(message)


@task(max_attempts=1, timeout=0.2)
async def too_slow():
    await trio.sleep(30)


@task()
def sync_waits_for_loop(key: str):
    """Blocks its thread until an async task (on the Trio loop) sets the event."""
    return Record(EVENTS[key].wait(timeout=20))


@task()
async def async_sets_event(key: str):
    await trio.sleep(0)
    EVENTS[key].set()
    return Record(True)


@task()
async def sleep_then_mark(seconds: float, path: str):
    """Writes 'started' then, after `seconds`, 'done' to `path` (graceful shutdown test)."""
    with open(path, "a") as f:
        f.write("started\n")
    await trio.sleep(seconds)
    with open(path, "a") as f:
        f.write("done\n")
    return Record("slept")


@task()
def mark(n: int):
    """Appends ``n pid`` to the file in $CORE_EXEC_DIR/<pid>: one line per execution.

    O_APPEND writes of one short line are atomic, and each process writes its own file."""
    directory = os.environ["CORE_EXEC_DIR"]
    fd = os.open(os.path.join(directory, str(os.getpid())), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, f"{n} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return Record(n)


@task()
def boom(depth: int = 0):
    """For `fairchild run`: raises from a nested helper so the traceback has depth."""
    return _explode(depth)


def _explode(depth: int) -> None:
    raise ValueError(f"exploded at depth {depth}")


@task()
def greet(name: str, punctuation: str = "!"):
    return Record(f"Hello, {name}{punctuation}")


@task()
def slow_sync(seconds: float):
    time.sleep(seconds)
    return Record(seconds)


GATES: dict[str, trio.Event] = {}


@task()
async def gated(key: str):
    """Runs until the test sets GATES[key] (created on first use)."""
    await GATES.setdefault(key, trio.Event()).wait()
    return Record(key)


@task()
def spawns_a_failure_and_a_wait(key: str):
    """A parent with one child that fails and one that runs until GATES[key] is set."""
    gated(key=key)
    always_fails(message="this child fails")
