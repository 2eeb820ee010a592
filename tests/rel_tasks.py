"""Tasks for the reliability acceptance suite (tests/acceptance), run by real
`fairchild worker` subprocesses (``--import rel_tasks``).

Every task appends ``(job_id, attempt, worker_id, pid, event, t)`` lines to the file named
by ``$REL_EXEC_LOG`` at start and at finish (O_APPEND, one write per line, so lines from
concurrent jobs and processes never interleave). The tests load that file into an
``executions`` table and assert with SQL counts. A file rather than an INSERT: it keeps
recording while the database is down (scenario 7) and adds no load to the database
under test (scenario 8).
"""

from __future__ import annotations

import json
import os
import time

import trio

from fairchild import Record, task
from fairchild.context import current_execution


def _log(event: str) -> None:
    path = os.environ.get("REL_EXEC_LOG")
    if not path:
        return
    ctx = current_execution()
    job = ctx.job if ctx is not None else None
    line = json.dumps({
        "job_id": str(job.id) if job else None,
        "attempt": job.attempt if job else None,
        "worker_id": str(job.worker_id) if job else None,
        "pid": os.getpid(),
        "event": event,
        "t": time.time(),
    }) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task(max_attempts=3)
async def rel_sleep(seconds: float = 0.0, first_attempt_seconds: float | None = None) -> None:
    """Sleep (cooperatively). `first_attempt_seconds` replaces `seconds` on attempt 1."""
    _log("start")
    ctx = current_execution()
    if first_attempt_seconds is not None and ctx is not None and ctx.job.attempt == 1:
        seconds = first_attempt_seconds
    await trio.sleep(seconds)
    _log("finish")


@task(max_attempts=10)
async def rel_quick(n: int = 0) -> Record:
    """A short job with many attempts (survives being in flight when its worker dies)."""
    _log("start")
    await trio.sleep(0.01)
    _log("finish")
    return Record(n)


@task(max_attempts=3)
def rel_thread_sleep(seconds: float = 60.0) -> None:
    """Ignores cancellation by blocking a worker thread."""
    _log("start")
    time.sleep(seconds)
    _log("finish")


@task(max_attempts=3)
async def rel_shielded(seconds: float = 60.0) -> None:
    """Ignores cancellation by shielding itself."""
    _log("start")
    with trio.CancelScope(shield=True):
        deadline = trio.current_time() + seconds
        while trio.current_time() < deadline:
            await trio.sleep(0.05)
    _log("finish")


# -- poison ------------------------------------------------------------------------------


class RelCustomBase(BaseException):
    """A BaseException that is neither Exception, SystemExit nor KeyboardInterrupt."""


@task(max_attempts=3)
async def rel_poison(kind: str) -> Record | None:
    _log("start")
    if kind == "value_error":
        raise ValueError("poison: " + "x" * 200_000)  # long: the traceback gets truncated
    if kind == "system_exit":
        raise SystemExit(3)
    if kind == "keyboard_interrupt":
        raise KeyboardInterrupt
    if kind == "custom_base":
        raise RelCustomBase("poison")
    if kind == "exception_group":
        raise ExceptionGroup("poison group", [ValueError("a"), KeyError("b")])
    if kind == "unserialisable":
        return Record(object())
    if kind == "nul_result":
        return Record("a\x00b")
    if kind == "bigint_result":
        return Record(10**5000)  # json.dumps raises ValueError (int digit limit)
    if kind == "surrogate_result":
        return Record("\ud800")  # encodes fine; PostgreSQL's jsonb refuses it
    if kind == "huge_result":
        return Record("x" * (50 * 1024 * 1024))
    raise AssertionError(kind)


@task(max_attempts=3)
def rel_poison_sync(kind: str) -> None:
    """The same, raised from a worker thread."""
    _log("start")
    if kind == "keyboard_interrupt":
        raise KeyboardInterrupt
    if kind == "system_exit":
        raise SystemExit(4)
    raise AssertionError(kind)


@task(max_attempts=3, timeout=1.0)
async def rel_hang() -> None:
    """Never returns; its 1 s timeout ends each attempt."""
    _log("start")
    await trio.sleep_forever()


@task(max_attempts=3)
async def rel_crash(delay: float = 1.0) -> None:
    """Kills its worker process after `delay` (a simulated OOM kill)."""
    _log("start")
    await trio.sleep(delay)
    os._exit(137)


@task(max_attempts=3)
async def rel_payload(blob: str) -> Record:
    _log("start")
    _log("finish")
    return Record(len(blob))


@task(max_attempts=3)
async def rel_noop(upstream: object = None) -> None:
    _log("start")
    _log("finish")
