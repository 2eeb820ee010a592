"""The `fairchild` command (cyclopts). Turns flags into calls; owns exit codes and log output.

Exit codes: 0 success; 1 a task or operation failed at run time; 2 bad usage (unknown
flag, bad value, unknown task, invalid arguments), with a one-line reason on stderr.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import trio
from cyclopts import App, CycloptsError, Parameter, Token

from .._version import __version__
from ..errors import FairchildError, InvalidArguments, TaskNotFound
from .logs import setup_logging

__all__ = ["app", "main", "UsageError"]

log = logging.getLogger("fairchild.cli")

app = App(
    name="fairchild",
    help="Fairchild: a Trio-native, PostgreSQL-backed job queue and workflow engine.",
    version=__version__,
    backend="trio",
)


class UsageError(Exception):
    """Bad input from the command line: exit 2 with this one-line message."""


# -- converters ------------------------------------------------------------------------


def _split_commas(type_: Any, tokens: Sequence[Token]) -> list[str]:
    """``--queues a,b`` and ``--queues a --queues b`` both give ["a", "b"]."""
    return [q.strip() for t in tokens for q in t.value.split(",") if q.strip()]


def _key_values(type_: Any, tokens: Sequence[Token]) -> dict[str, Any]:
    """``-a key=value`` (repeatable). Values are JSON when they parse (2, true, [1]), else text."""
    out: dict[str, Any] = {}
    for t in tokens:
        key, sep, raw = t.value.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {t.value!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


Imports = Annotated[
    list[str],
    Parameter(name=["--import", "-i"], negative_iterable="", help="Module to import (registers its tasks). Repeatable."),
]
Queues = Annotated[
    list[str],
    Parameter(converter=_split_commas, negative_iterable="", help="Comma-separated queue names (default: every queue)."),
]
# Declared as a list so that -a can repeat (cyclopts refuses a repeated dict option);
# the converter turns the tokens into the dict the commands receive.
KeyValues = Annotated[
    list[str],
    Parameter(name=["--arg", "-a"], converter=_key_values, negative_iterable="",
              help="Task argument as key=value (JSON values are parsed). Repeatable."),
]
LogLevel = Annotated[str, Parameter(env_var="FAIRCHILD_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR.")]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d``."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"--in: expected a duration like 30s, 5m, 2h or 1d, got {text!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def parse_when(text: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` accepted)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at: expected an ISO 8601 time like 2030-01-15T10:00:00Z, got {text!r}") from None
    if when.tzinfo is None:
        raise UsageError(f"--at: give a time zone (e.g. {text}Z or {text}+00:00)")
    return when


def import_modules(modules: Sequence[str]) -> None:
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the working directory import
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - report any import failure as usage
            raise UsageError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from exc


def resolve_task(name: str) -> Any:
    """The task registered as `name`, importing its module when it is not registered yet."""
    from ..task import get_task

    try:
        return get_task(name)
    except TaskNotFound:
        module = name.rpartition(".")[0]
        if module:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
        return get_task(name)


def _setup(log_level: str) -> None:
    try:
        setup_logging(log_level, os.environ.get("FAIRCHILD_LOG_FORMAT", "text"))
    except ValueError:
        raise UsageError(f"--log-level: unknown level {log_level!r} (use DEBUG, INFO, WARNING or ERROR)") from None


async def _client() -> Any:
    from ..client import Fairchild

    return Fairchild()


async def _ensure_schema(fc: Any) -> None:
    """Install on the embedded database (zero setup); elsewhere insist on `fairchild install`."""
    if fc.is_embedded:
        await fc.install()
        return
    from ..db import migrations

    applied = await fc.database.applied_migrations()
    if not applied:
        raise UsageError("the Fairchild schema is not installed in this database: run `fairchild install`")
    if applied[-1] < migrations.all_migrations()[-1].version:
        raise UsageError("the database has pending Fairchild migrations: run `fairchild migrate`")


# -- commands --------------------------------------------------------------------------


@app.command
async def install(*, log_level: LogLevel = "INFO") -> None:
    """Create Fairchild's tables and indexes (idempotent)."""
    _setup(log_level)
    async with await _client() as fc:
        applied = await fc.install()
        log.info("schema installed" if applied else "schema already up to date")


@app.command
async def migrate(*, log_level: LogLevel = "INFO") -> None:
    """Apply pending migrations (idempotent; safe to run from several processes)."""
    _setup(log_level)
    async with await _client() as fc:
        applied = await fc.migrate()
        if not applied:
            log.info("no pending migrations")


@app.command
async def worker(
    *,
    import_: Imports = [],  # noqa: B006 - cyclopts reads defaults, never mutates them
    queues: Queues = [],  # noqa: B006
    concurrency: int = 10,
    grace: float = 30.0,
    abandon_timeout: float = 5.0,
    poll_interval: float = 2.0,
    heartbeat_interval: float = 5.0,
    lease: float = 30.0,
    rescue_interval: float | None = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a worker until SIGTERM/SIGINT (first: finish running jobs within --grace; second:
    cancel them now; third: exit at once).

    The first signal stops claiming; running jobs get --grace seconds, then are cancelled
    and put back to run again (the attempt is not counted); jobs that ignore cancellation
    are abandoned --abandon-timeout seconds later (their rows are released anyway). Exit
    status 0. Under a supervisor that escalates to SIGKILL (``docker stop -t N``, systemd
    ``TimeoutStopSec``, Kubernetes ``terminationGracePeriodSeconds``), give it more than
    --grace + --abandon-timeout + a few seconds, or jobs are left to the rescuer (they run
    again after --lease + --rescue-interval).

    Parameters
    ----------
    concurrency
        Jobs run at once (default 10).
    grace
        Seconds running jobs get to finish after the first signal; then they are cancelled
        and put back to run again.
    abandon_timeout
        Seconds to wait, after cancelling, for jobs that ignore cancellation before their
        rows are released anyway and the process exits.
    poll_interval
        Seconds between claims when no NOTIFY arrives (a fallback; NOTIFY wakes the worker).
    heartbeat_interval
        Seconds between lease renewals.
    lease
        Seconds a worker's lease lasts; jobs of a worker silent for longer are rescued.
        A worker that cannot renew it cancels its own jobs one --heartbeat-interval before
        it runs out. Must exceed twice --heartbeat-interval.
    rescue_interval
        Seconds between maintenance passes (rescue of dead workers' jobs, pruning);
        default: --heartbeat-interval.
    """
    _setup(log_level)
    from ..worker import WorkerPool

    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    if lease <= 2 * heartbeat_interval:
        raise UsageError(f"--lease ({lease:g}) must exceed twice --heartbeat-interval ({heartbeat_interval:g})")
    import_modules(import_)
    async with await _client() as fc:
        await _ensure_schema(fc)
        pool = WorkerPool(
            fc,
            queues=queues or None,
            concurrency=concurrency,
            grace=grace,
            abandon_timeout=abandon_timeout,
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            lease=lease,
            rescue_interval=rescue_interval,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_exit_when_abandoned, pool, fc)
            await pool.start()
            nursery.cancel_scope.cancel()


async def _exit_when_abandoned(pool: Any, fc: Any) -> None:
    """Jobs that ignore cancellation cannot be awaited; once their rows are released, the
    other outcomes written and the worker row removed, exit (status 0)."""
    await pool.abandoned.wait()
    log.warning("exiting without the abandoned jobs (their rows were released)")
    await fc.close()
    logging.shutdown()
    os._exit(0)


@app.command
async def enqueue(
    task: str,
    *,
    args: Annotated[str | None, Parameter(help="Arguments as a JSON object.")] = None,
    arg: KeyValues = {},  # type: ignore[assignment]  # noqa: B006 - the converter makes a dict
    queue: str | None = None,
    priority: int | None = None,
    in_: Annotated[str | None, Parameter(help="Run after this delay: 30s, 5m, 2h, 1d.")] = None,
    at: Annotated[str | None, Parameter(help="Run at this ISO 8601 time (with a zone).")] = None,
    import_: Imports = [],  # noqa: B006
    log_level: LogLevel = "INFO",
) -> None:
    """Enqueue a job of TASK (a dotted name like myapp.tasks.send_email); prints the job as JSON."""
    _setup(log_level)
    import_modules(import_)
    kwargs: dict[str, Any] = {}
    if args is not None:
        try:
            parsed = json.loads(args)
        except ValueError as exc:
            raise UsageError(f"--args: not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise UsageError("--args: expected a JSON object of argument names to values")
        kwargs.update(parsed)
    kwargs.update(arg)  # type: ignore[arg-type]
    if in_ is not None and at is not None:
        raise UsageError("give --in or --at, not both")
    when = parse_when(at) if at is not None else None
    if in_ is not None:
        when = datetime.now(timezone.utc) + parse_duration(in_)
    t = resolve_task(task)
    new = t.prepare(kwargs, queue=queue, priority=priority, scheduled_at=when)  # validates first
    async with await _client() as fc:
        await _ensure_schema(fc)
        (job,) = await fc.insert_jobs([new])
    out = job.to_dict()
    sys.stdout.write(json.dumps({k: out[k] for k in ("id", "task", "queue", "state", "priority", "scheduled_at")}) + "\n")


def _job_id(text: str) -> Any:
    import uuid

    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(f"not a job id: {text!r}") from None


def _print_job(job: Any) -> None:
    out = job.to_dict()
    keys = ("id", "task", "queue", "state", "attempt", "max_attempts", "cancel_reason")
    sys.stdout.write(json.dumps({k: out[k] for k in keys}) + "\n")


@app.command
async def cancel(job_id: str, *, log_level: LogLevel = "INFO") -> None:
    """Cancel job JOB_ID: a queued one never runs; a running one has its cancel scope
    cancelled by the worker holding it and ends `cancelled`. Prints the job as JSON.
    Exit 1 if the job is already finished or does not exist."""
    _setup(log_level)
    job = _job_id(job_id)
    async with await _client() as fc:
        await _ensure_schema(fc)
        _print_job(await fc.cancel_job(job))


@app.command
async def retry(job_id: str, *, log_level: LogLevel = "INFO") -> None:
    """Run discarded or cancelled job JOB_ID again (one more attempt if its attempts are
    spent). Prints the job as JSON. Exit 1 for a job in another state or no such job."""
    _setup(log_level)
    job = _job_id(job_id)
    async with await _client() as fc:
        await _ensure_schema(fc)
        _print_job(await fc.retry_job(job))


@app.command
async def pause(queue: str, *, log_level: LogLevel = "INFO") -> None:
    """Pause QUEUE: no worker claims its jobs until `fairchild resume QUEUE` (persisted;
    running jobs finish)."""
    _setup(log_level)
    async with await _client() as fc:
        await _ensure_schema(fc)
        await fc.pause_queue(queue)
    log.info("queue %s paused", queue)


@app.command
async def resume(queue: str, *, log_level: LogLevel = "INFO") -> None:
    """Resume QUEUE: workers claim its jobs again."""
    _setup(log_level)
    async with await _client() as fc:
        await _ensure_schema(fc)
        await fc.resume_queue(queue)
    log.info("queue %s resumed", queue)


@app.command
async def ui(
    *,
    import_: Imports = [],  # noqa: B006
    host: str = "localhost",
    port: int = 8080,
    token: Annotated[
        str | None, Parameter(env_var="FAIRCHILD_UI_TOKEN", help="Access token (prefer the env var).")
    ] = None,
    read_only: bool = False,
    insecure_no_auth: bool = False,
    log_level: LogLevel = "INFO",
) -> None:
    """Serve the web dashboard and JSON API until SIGTERM/SIGINT.

    Parameters
    ----------
    host
        Address to bind (default localhost). A non-loopback address needs --token.
    port
        Port to bind (default 8080; 0 picks a free one).
    token
        Access token: every route but /healthz then needs ``Authorization: Bearer TOKEN``
        or a browser login with it. Also read from FAIRCHILD_UI_TOKEN.
    read_only
        Refuse every action that changes state (enqueue, cancel, retry, pause, resume).
    insecure_no_auth
        Allow a non-loopback bind without a token (anyone who can reach it controls it).
    """
    _setup(log_level)
    from ..web import UnsafeBind, check_bind, serve

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    try:
        check_bind(host, token, insecure_no_auth)
    except UnsafeBind as exc:
        raise UsageError(str(exc)) from None
    import_modules(import_)
    async with await _client() as fc:
        await _ensure_schema(fc)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, stop, nursery.cancel_scope)
            await serve(fc, host, port, token=token, read_only=read_only,
                        insecure_no_auth=insecure_no_auth, shutdown_trigger=stop.wait)
            nursery.cancel_scope.cancel()


async def _stop_on_signal(stop: trio.Event, scope: trio.CancelScope) -> None:
    """First SIGTERM/SIGINT: graceful stop; second: stop now."""
    import signal

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if not stop.is_set():
                log.info("%s: stopping the web UI", signal.Signals(signum).name)
                stop.set()
            else:
                scope.cancel()


@app.command(name="run")
async def run_(
    task: str,
    *,
    arg: KeyValues = {},  # type: ignore[assignment]  # noqa: B006 - the converter makes a dict
    import_: Imports = [],  # noqa: B006
    log_level: LogLevel = "INFO",
) -> None:
    """Run TASK's function in this process (no database, no queue); prints its result as JSON.

    Tasks it calls run directly too. On an error, the full traceback is printed (exit 1).
    """
    _setup(log_level)
    from ..record import Record

    import_modules(import_)
    t = resolve_task(task)
    kwargs = t.bind((), arg)
    try:
        value = await t.fn(**kwargs) if t.is_async else await trio.to_thread.run_sync(lambda: t.fn(**kwargs))
    except Exception:  # noqa: BLE001 - show the user's error in full
        traceback.print_exc()
        raise SystemExit(1) from None
    if isinstance(value, Record):
        value = value.value
    try:
        sys.stdout.write(json.dumps(value, default=repr) + "\n")
    except ValueError:
        sys.stdout.write(repr(value) + "\n")


def _leaf(exc: BaseException) -> BaseException:
    """The error inside nurseries' exception groups (a lone one), else the group itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `fairchild` console script."""
    try:
        try:
            app(list(argv) if argv is not None else None, exit_on_error=False, print_error=False)
        except BaseExceptionGroup as group:
            raise _leaf(group) from None
    except CycloptsError as exc:
        message = " ".join(str(exc).split())
        sys.stderr.write(f"fairchild: error: {message}\n")
        raise SystemExit(2) from None
    except (UsageError, InvalidArguments, TaskNotFound) as exc:
        sys.stderr.write(f"fairchild: error: {exc}\n")
        raise SystemExit(2) from None
    except FairchildError as exc:
        sys.stderr.write(f"fairchild: error: {exc}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
