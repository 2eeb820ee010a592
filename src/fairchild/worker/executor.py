"""Running one claimed job and turning whatever happened into an `Outcome`.

The executor never lets a job's exception escape (``BaseException`` included: a task
that raises ``SystemExit`` or ``KeyboardInterrupt`` fails alone), and never records Trio's
``Cancelled`` as a failure: cancellation is the pool's decision and carries its reason.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
import re
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import trio

from .. import codec
from ..context import ExecutionContext, executing
from ..db import Outcome
from ..errors import FairchildError, NotSerializable, TaskNotFound
from ..future import Future
from ..job import Job
from ..record import Record
from ..task import get_task

__all__ = ["CancelReason", "Execution", "ExponentialBackoff", "JobLogger", "execute"]

log = logging.getLogger("fairchild.worker")

TRACEBACK_LIMIT = 64 * 1024  # bytes of traceback kept per error entry
MESSAGE_LIMIT = 4 * 1024


class UpstreamMissing(FairchildError):
    """A job's upstream was deleted (pruned) before the job ran."""


class CancelReason(enum.Enum):
    SHUTDOWN = "shutdown"  # grace period over, or a second signal: release, refund the attempt
    OPERATOR = "operator"  # cancelled by API/CLI: the job ends cancelled
    LEASE_LOST = "lease_lost"  # this worker could not renew its lease: release the row (fenced)


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Delay before retry n: ``base * factor**(n-1)``, capped, with +/- `jitter` spread."""

    base: float = 2.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.1

    def __call__(self, attempt: int) -> float:
        delay = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds job_id, task, queue and attempt to every record (as `extra` fields)."""

    def __init__(self, job: Job) -> None:
        super().__init__(
            log, {"job_id": str(job.id), "task": job.task, "queue": job.queue, "attempt": job.attempt}
        )

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}  # type: ignore[dict-item]
        return msg, kwargs


@dataclass(eq=False)
class Execution:
    """A running job: its cancel scope is the handle for timeouts, cancel and shutdown."""

    job: Job
    scope: trio.CancelScope
    reason: CancelReason | None = None
    started: float = field(default_factory=trio.current_time)

    def cancel(self, reason: CancelReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.scope.cancel()


def _only_cancelled(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return False


def _without_cancelled(exc: BaseException) -> BaseException:
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
        if rest is not None:
            return rest
    return exc


def error_entry(attempt: int, kind: str, now: datetime, exc: BaseException | None = None, message: str | None = None) -> dict[str, Any]:
    """One element of a job's `errors` list."""
    if exc is not None:
        text = f"{type(exc).__qualname__}: {exc}" if str(exc) else type(exc).__qualname__
        tb = "".join(traceback.format_exception(exc))
        if len(tb) > TRACEBACK_LIMIT:
            tb = "... (truncated)\n" + tb[-TRACEBACK_LIMIT:]
        exc_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
    else:
        text, tb, exc_type = message or kind, None, None
    return {
        "attempt": attempt,
        "kind": kind,
        "type": exc_type,
        "error": _storable(text[:MESSAGE_LIMIT]),
        "traceback": _storable(tb) if tb is not None else None,
        "at": now.isoformat(),
    }


def _storable(text: str) -> str:
    """jsonb cannot hold NUL characters: show them escaped instead."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an unescaped \u0000 in JSON text


async def _call(fn: Callable[..., Any], is_async: bool, kwargs: Mapping[str, Any], limiter: trio.CapacityLimiter) -> Any:
    if is_async:
        return await fn(**kwargs)
    # A sync task runs in a worker thread (the context, and so the running job, follows it).
    # On cancellation the thread is abandoned: Python cannot stop it, but the job's slot and
    # row are released; the thread finishes on its own and its result is discarded.
    return await trio.to_thread.run_sync(
        functools.partial(fn, **kwargs), abandon_on_cancel=True, limiter=limiter
    )


async def execute(
    execution: Execution,
    *,
    worker_id: uuid.UUID,
    resolve: Callable[[list[uuid.UUID]], Any],
    now: Callable[[], datetime],
    backoff: Callable[[int], float],
    limiter: trio.CapacityLimiter,
    default_timeout: float | None,
    max_result_bytes: int,
) -> Outcome:
    """Run the job's task inside its cancel scope; return the outcome to write.

    Every outcome is written fenced on (id, attempt, worker, running), so whatever is
    returned never overwrites a later attempt. Cancellation of the surrounding scope (not
    the job's own) propagates as usual, and nothing is returned.
    """
    job = execution.job
    jlog = JobLogger(job)
    ctx = ExecutionContext(job)
    value: Any = None
    failure: tuple[str, BaseException | None, str | None] | None = None
    timeout = job.timeout if job.timeout is not None else default_timeout

    with execution.scope:
        with trio.move_on_after(timeout) if timeout is not None else trio.CancelScope() as timer:
            try:
                task = get_task(job.task)
                kwargs = job.args
                upstreams = codec.upstream_ids(kwargs)
                if upstreams:
                    results = await resolve(upstreams)
                    missing = [str(u) for u in upstreams if u not in results]
                    if missing:
                        raise UpstreamMissing(
                            f"upstream job(s) {', '.join(missing)} no longer exist (pruned?); "
                            "their results cannot be passed to this job"
                        )
                    kwargs = codec.resolve(kwargs, results)
                jlog.debug("job %s started (%s, attempt %d)", job.id, job.task, job.attempt)
                with executing(ctx):
                    value = await _call(task.fn, task.is_async, kwargs, limiter)
            except TaskNotFound as exc:
                failure = ("unknown_task", None, str(exc))
            except UpstreamMissing as exc:
                failure = ("upstream_missing", None, str(exc))
            except BaseException as exc:  # noqa: BLE001 - a job may raise anything
                if _only_cancelled(exc):
                    raise
                failure = ("error", _without_cancelled(exc), None)

    at = now()
    base = functools.partial(Outcome, job_id=job.id, attempt=job.attempt, worker_id=worker_id)
    if execution.scope.cancelled_caught:
        reason = execution.reason or CancelReason.SHUTDOWN
        if reason is CancelReason.LEASE_LOST:
            # Released like a rescue would (the attempt counts). If the rescuer got there
            # first, or the job runs elsewhere already, the fenced write matches nothing.
            jlog.info("job %s stopped: this worker could not renew its lease", job.id)  # one ERROR line per lapse
            entry = error_entry(job.attempt, "lease_lost", at,
                                message=f"worker lost: {worker_id} could not renew its lease")
            if job.attempt >= job.max_attempts:
                return base(state="discarded", error=entry)
            return base(state="available", scheduled_at=at, error=entry)
        if reason is CancelReason.OPERATOR:
            jlog.info("job %s cancelled by an operator", job.id)
            return base(state="cancelled", cancel_reason="cancelled by an operator",
                           error=error_entry(job.attempt, "cancelled", at, message="cancelled by an operator"))
        jlog.info("job %s interrupted by shutdown; released to run again", job.id)
        return base(state="available", refund=True, scheduled_at=at,
                       error=error_entry(job.attempt, "interrupted", at, message="interrupted by worker shutdown"))
    if timer.cancelled_caught:
        failure = ("timeout", None, f"timed out after {timeout:g} s")

    if failure is None:
        try:
            return _success(job, ctx, value, base, max_result_bytes, jlog)
        except Exception as exc:  # noqa: BLE001 - NotSerializable, or json's own ValueError/RecursionError
            failure = ("result", exc, None)

    kind, error, message = failure
    entry = error_entry(job.attempt, kind, at, error, message)
    if job.attempt < job.max_attempts:
        delay = backoff(job.attempt)
        jlog.warning("job %s failed (%s); retry %d/%d in %.1f s",
                     job.id, entry["error"], job.attempt + 1, job.max_attempts, delay)
        return base(state="retryable", error=entry, scheduled_at=at + timedelta(seconds=delay))
    jlog.error("job %s discarded after %d attempts: %s", job.id, job.attempt, entry["error"])
    return base(state="discarded", error=entry)


def _success(
    job: Job, ctx: ExecutionContext, value: Any, base: Callable[..., Outcome], max_result_bytes: int, jlog: JobLogger
) -> Outcome:
    result_json: str | None = None
    result_job_id: uuid.UUID | None = None
    children = ctx.children
    if isinstance(value, Future):
        if value.job_id not in {c.id for c in children}:
            raise NotSerializable("(a Future not spawned by this job)", value, "result")
        result_job_id = value.job_id
    elif isinstance(value, Record):
        result_json = codec.encode_result(value.value, max_result_bytes)
        if "\\u0000" in result_json and _JSON_NUL.search(result_json):
            raise NotSerializable("value (contains a NUL character, which PostgreSQL cannot store)",
                                  value.value, "result")
    state = "waiting" if children else "completed"
    if children:
        jlog.info("job %s finished; waiting for %d children", job.id, len(children))
    else:
        jlog.info("job %s completed", job.id)
    return base(state=state, result_json=result_json, result_job_id=result_job_id, children=tuple(children))
