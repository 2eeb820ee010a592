"""`WorkerPool`: claims jobs and runs each in its own cancel scope, in one nursery tree.

    run()                         outer nursery: a sentinel turns outside cancellation into stop_now()
    └── _serve()                  shielded: shutdown is ours to finish, exactly
        ├── heartbeat             registers the worker, renews its lease, self-fences
        ├── maintenance           rescue of dead workers' jobs, pruning (one leader at a time)
        ├── completer             writes outcomes in batches: shielded, fenced, retried
        └── jobs                  one task per claimed job, each in its own CancelScope
            (producer)            claims up to the free slots in one statement

Shutdown: `stop()` stops claiming at once and gives running jobs `grace` seconds; then
their scopes are cancelled and their rows released to run again (the interrupted attempt
is refunded). `stop_now()` skips the grace period.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..db import CHANNEL_CANCEL, CHANNEL_INSERT, ConnectionLost, DatabaseError, Outcome
from ..job import Job
from . import registry
from .executor import CancelReason, Execution, ExponentialBackoff, JobLogger, execute
from .maintenance import Maintenance, RetentionPolicy
from .throttle import Throttle

if TYPE_CHECKING:
    from ..client import Fairchild

__all__ = ["WorkerPool"]

log = logging.getLogger("fairchild.worker")

TRANSIENT = (*ConnectionLost, DatabaseError)


class WorkerPool:
    """Run jobs from `queues` (None: every queue), at most `concurrency` at a time.

    Use ``await pool.start()`` to run until SIGINT/SIGTERM (the first signal shuts down
    gracefully, the second at once), or ``await nursery.start(pool.run)`` to embed the pool
    in your own Trio program and stop it with `stop()`.

    Timing (seconds): ``grace`` for running jobs at shutdown; ``abandon_timeout`` after
    cancelling them, for jobs that ignore cancellation; ``poll_interval`` between claims
    when no NOTIFY arrives; ``heartbeat_interval`` and ``lease``: the worker renews its
    lease every interval, and a worker whose lease has expired is presumed dead (its jobs
    are rescued).
    """

    def __init__(
        self,
        fairchild: Fairchild,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        *,
        grace: float = 30.0,
        abandon_timeout: float = 5.0,
        poll_interval: float = 2.0,
        heartbeat_interval: float = 5.0,
        lease: float = 30.0,
        rescue_interval: float | None = None,
        retention: RetentionPolicy | None = None,
        backoff: Callable[[int], float] | None = None,
        default_timeout: float | None = None,
        max_result_bytes: int = 4 * 1024 * 1024,
        completion_buffer: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if lease <= heartbeat_interval * 2:
            raise ValueError(f"lease ({lease} s) must exceed two heartbeat intervals ({heartbeat_interval} s)")
        self.fairchild = fairchild
        self.queues = sorted(set(queues)) if queues else None
        self.concurrency = concurrency
        self.grace = grace
        self.abandon_timeout = abandon_timeout
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.lease = lease
        self.backoff = backoff or ExponentialBackoff()
        self.default_timeout = default_timeout
        self.max_result_bytes = max_result_bytes
        self.id = uuid.uuid4()
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.maintenance = Maintenance(
            fairchild, interval=rescue_interval or heartbeat_interval, retention=retention or RetentionPolicy()
        )
        self._buffer = completion_buffer or max(16, concurrency * 2)
        self._running: dict[uuid.UUID, Execution] = {}
        self._claim_scope = trio.CancelScope()
        self._shutdown_deadline = math.inf
        self._slot_freed = trio.Event()
        self._work_hint = trio.Event()
        self._idle = trio.Event()
        self._limiter = trio.CapacityLimiter(concurrency)
        self._stopping = False
        self._abandoned: set[uuid.UUID] = set()
        self.abandoned = trio.Event()  # set when jobs that ignore cancellation were abandoned
        self.lease_valid_until = math.inf  # trio clock; the heartbeat moves it forward

    # -- public controls -------------------------------------------------------------

    @property
    def running_jobs(self) -> list[Job]:
        return [e.job for e in self._running.values()]

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming now; let running jobs finish within `grace` (default: the pool's)."""
        deadline = trio.current_time() + (self.grace if grace is None else grace)
        self._stopping = True
        self._claim_scope.cancel()
        self._shutdown_deadline = min(self._shutdown_deadline, deadline)
        for execution in self._running.values():
            execution.scope.deadline = min(execution.scope.deadline, self._shutdown_deadline)
        log.info("worker %s stopping: %d running jobs have %.1f s to finish",
                 self.id, len(self._running), max(0.0, self._shutdown_deadline - trio.current_time()))

    def stop_now(self) -> None:
        """Stop claiming and cancel every running job (their rows are released)."""
        self.stop(grace=0)

    def cancel_job(self, job_id: uuid.UUID) -> bool:
        """Cancel a job running here (it ends `cancelled`). False if it is not running here."""
        execution = self._running.get(job_id)
        if execution is None:
            return False
        execution.cancel(CancelReason.OPERATOR)
        return True

    async def start(self) -> None:
        """Run until SIGINT or SIGTERM: the first stops gracefully, the second at once.

        Cancellation: as `run`.
        """
        from .signals import watch_signals

        async with trio.open_nursery() as nursery:
            await nursery.start(watch_signals, self)
            await self.run()
            nursery.cancel_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[WorkerPool] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the pool until `stop()`; `task_status.started(self)` once it is claiming.

        Cancellation from outside is treated as `stop_now()`: running jobs are cancelled,
        their rows released, outcomes written and the worker row removed before the
        cancellation propagates.
        """
        async with trio.open_nursery() as outer:
            outer.start_soon(self._stop_when_cancelled)
            with trio.CancelScope(shield=True):
                await self._serve(task_status)
            outer.cancel_scope.cancel()

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            if not self._stopping:
                self.stop_now()

    # -- the tree ----------------------------------------------------------------------

    async def _serve(self, task_status: trio.TaskStatus[WorkerPool]) -> None:
        await registry.register(self)
        try:
            async with trio.open_nursery() as services:
                await services.start(registry.heartbeat, self)
                services.start_soon(self.maintenance.run)
                send, recv = trio.open_memory_channel[Outcome](self._buffer)
                async with trio.open_nursery() as work:
                    work.start_soon(self._complete, recv)
                    async with send:
                        async with trio.open_nursery() as jobs:
                            listener = self.fairchild.database.listener
                            with listener.subscribe(CHANNEL_INSERT, self._on_insert), \
                                    listener.subscribe(CHANNEL_CANCEL, self._on_cancel):
                                task_status.started(self)
                                log.info("worker %s claiming from %s with concurrency %d",
                                         self.id, ", ".join(self.queues) if self.queues else "every queue",
                                         self.concurrency)
                                await self._produce(jobs, send)
                                await self._abandon_stragglers()
                services.cancel_scope.cancel()
        finally:
            await registry.deregister(self)
            log.info("worker %s stopped", self.id)

    # -- claiming ----------------------------------------------------------------------

    def _on_insert(self, payload: str | None) -> None:
        if payload is None or self.queues is None or payload in self.queues:
            self._work_hint.set()

    def _on_cancel(self, payload: str | None) -> None:
        if payload is not None:
            try:
                self.cancel_job(uuid.UUID(payload))
            except ValueError:
                pass

    async def _produce(self, jobs: trio.Nursery, send: trio.MemorySendChannel[Outcome]) -> None:
        db = self.fairchild.database
        errors = Throttle(log, "claiming")
        with self._claim_scope:
            while True:
                while len(self._running) >= self.concurrency:
                    await self._slot_freed.wait()
                self._work_hint = trio.Event()
                try:
                    if await db.listener.ensure():
                        log.debug("LISTEN connection (re)opened")
                    free = self.concurrency - len(self._running)
                    with trio.CancelScope(shield=True):  # a claim that committed must reach a job task
                        rows, next_due = await db.claim(self.id, self.queues, free, self.fairchild.clock())
                        for row in rows:
                            self._start(jobs, Job.from_row(row), send)
                except TRANSIENT as exc:
                    await trio.sleep(errors.failed(exc))
                    continue
                errors.recovered()
                if len(rows) == free:
                    continue
                delay = self.poll_interval * random.uniform(0.8, 1.2)
                if next_due is not None:
                    delay = min(delay, max(0.0, (next_due - self.fairchild.clock()).total_seconds()))
                with trio.move_on_after(delay):
                    await self._work_hint.wait()

    def _start(self, jobs: trio.Nursery, job: Job, send: trio.MemorySendChannel[Outcome]) -> None:
        execution = Execution(job, trio.CancelScope(deadline=self._shutdown_deadline))
        self._running[job.id] = execution
        jobs.start_soon(self._run_job, execution, send, name=f"job {job.id} {job.task}")

    async def _run_job(self, execution: Execution, send: trio.MemorySendChannel[Outcome]) -> None:
        job = execution.job
        try:
            outcome = await execute(
                execution,
                worker_id=self.id,
                resolve=self.fairchild.fetch_results,
                now=self.fairchild.clock,
                backoff=self.backoff,
                limiter=self._limiter,
                default_timeout=self.default_timeout,
                max_result_bytes=self.max_result_bytes,
            )
            if outcome is not None and job.id not in self._abandoned:
                with trio.CancelScope(shield=True):
                    await send.send(outcome)
        finally:
            self._running.pop(job.id, None)
            self._slot_freed.set()
            self._slot_freed = trio.Event()

    async def _abandon_stragglers(self) -> None:
        """After shutdown: give cancelled jobs `abandon_timeout`, then release their rows
        ourselves so they run again elsewhere, even if their code ignores cancellation."""
        with trio.move_on_at(self._shutdown_deadline + self.abandon_timeout):
            while self._running:
                await self._slot_freed.wait()
        stragglers = [e for e in self._running.values() if e.job.id not in self._abandoned]
        if not stragglers:
            return
        now = self.fairchild.clock()
        from .executor import error_entry

        outcomes = [
            Outcome(job_id=e.job.id, attempt=e.job.attempt, worker_id=self.id, state="available",
                    refund=True, scheduled_at=now,
                    error=error_entry(e.job.attempt, "interrupted", now,
                                      message="abandoned: ignored cancellation at shutdown"))
            for e in stragglers
        ]
        for e in stragglers:
            self._abandoned.add(e.job.id)
            JobLogger(e.job).error("job %s ignores cancellation; abandoning it and releasing its row", e.job.id)
        await self._write(outcomes)
        # Their tasks cannot be awaited (their code shields itself from cancellation): say so,
        # so that a process that owns this pool (the CLI) can exit without them.
        self.abandoned.set()

    # -- completing ----------------------------------------------------------------------

    async def _complete(self, recv: trio.MemoryReceiveChannel[Outcome]) -> None:
        async with recv:
            while True:
                try:
                    batch = [await recv.receive()]
                except trio.EndOfChannel:
                    return
                while len(batch) < 500:
                    try:
                        batch.append(recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write(batch)

    async def _write(self, batch: list[Outcome]) -> None:
        """Write outcomes, retrying with backoff while the database is unreachable.

        Shielded: a cancellation never drops an outcome already computed. Gives up only
        once this worker's lease has run out (the rescuer owns those jobs then)."""
        db = self.fairchild.database
        errors = Throttle(log, "writing job outcomes")
        with trio.CancelScope(shield=True):
            while True:
                try:
                    report = await db.finish(batch, self.fairchild.clock())
                except TRANSIENT as exc:
                    if trio.current_time() > self.lease_valid_until:
                        log.error("giving up on %d job outcomes: this worker's lease expired", len(batch))
                        return
                    await trio.sleep(errors.failed(exc))
                    continue
                errors.recovered()
                for job_id in report.fenced:
                    log.warning("outcome of job %s not written: its lease was lost (another attempt owns it)",
                                job_id, extra={"job_id": str(job_id)})
                return

    def self_fence(self) -> None:
        """Cancel every running job: this worker could not renew its lease in time."""
        for execution in list(self._running.values()):
            execution.cancel(CancelReason.LEASE_LOST)

    def describe(self) -> dict[str, Any]:
        return {"id": str(self.id), "queues": self.queues, "concurrency": self.concurrency}
