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
is refunded). Jobs that ignore the cancellation for `abandon_timeout` more seconds are
abandoned: their rows are released anyway, outcomes already computed are written, the
worker row is removed and `abandoned` is set (the CLI then exits the process).
`stop_now()` skips the grace period; `stop_now(force=True)` also abandons at once.

Leases: the heartbeat renews the worker's lease every `heartbeat_interval`. When it cannot
(database down, partition), the pool stops claiming and, one interval before the lease
runs out, cancels its own jobs: their rows are released by fenced writes, which match
nothing if a rescuer got there first. Every write to a claimed job is fenced on
(id, attempt, worker id, state running): a write that matches nothing means the lease was
lost; it is logged and never retried, so it never overwrites a later attempt.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import trio

from ..db import CHANNEL_CANCEL, CHANNEL_INSERT, ConnectionLost, DatabaseError, Outcome
from ..job import Job
from . import registry
from .executor import CancelReason, Execution, ExponentialBackoff, JobLogger, error_entry, execute
from .maintenance import Maintenance, RetentionPolicy
from .throttle import Throttle

if TYPE_CHECKING:
    from ..client import Fairchild

__all__ = ["WorkerPool"]

log = logging.getLogger("fairchild.worker")

TRANSIENT = (*ConnectionLost, DatabaseError)
FORCED_ABANDON = 0.5  # seconds cancelled jobs get after a forced stop (second signal)


class WorkerPool:
    """Run jobs from `queues` (None: every queue), at most `concurrency` at a time.

    Use ``await pool.start()`` to run until SIGINT/SIGTERM (the first signal shuts down
    gracefully, the second at once), or ``await nursery.start(pool.run)`` to embed the pool
    in your own Trio program and stop it with `stop()`.

    Timing (seconds): ``grace`` for running jobs at shutdown; ``abandon_timeout`` after
    cancelling them, for jobs that ignore cancellation; ``poll_interval`` between claims
    when no NOTIFY arrives; ``heartbeat_interval`` and ``lease``: the worker renews its
    lease every interval, and a worker whose lease has expired is presumed dead (its jobs
    are rescued); ``rescue_interval`` (default: ``heartbeat_interval``) between
    maintenance passes, so a dead worker's jobs run again within ``lease +
    rescue_interval``. ``completion_buffer``: outcomes waiting to be written while the
    database is unreachable; when it is full, claiming pauses.
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
        self.rescue_interval = rescue_interval or heartbeat_interval
        self.maintenance = Maintenance(
            fairchild, interval=self.rescue_interval, retention=retention or RetentionPolicy()
        )
        self._buffer = completion_buffer or max(16, concurrency * 2)
        self._running: dict[uuid.UUID, Execution] = {}
        self._max_attempts: dict[uuid.UUID, int] = {}
        self._startup_scope = trio.CancelScope()
        self._claim_scope = trio.CancelScope()
        self._shutdown_deadline = math.inf
        self._abandon_at = math.inf
        self._completer_done = trio.Event()
        self._slot_freed = trio.Event()
        self._work_hint = trio.Event()
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
        """Stop claiming now; let running jobs finish within `grace` (default: the pool's).

        Then they are cancelled, and their rows released to run again at once (attempt
        refunded); jobs still running `abandon_timeout` later are abandoned. Calling it
        again can only shorten the deadlines."""
        now = trio.current_time()
        deadline = now + (self.grace if grace is None else grace)
        self._stopping = True
        self._startup_scope.cancel()
        self._claim_scope.cancel()
        self._shutdown_deadline = min(self._shutdown_deadline, deadline)
        self._abandon_at = min(self._abandon_at, self._shutdown_deadline + self.abandon_timeout)
        for execution in self._running.values():
            execution.scope.deadline = min(execution.scope.deadline, self._shutdown_deadline)
        self._changed()
        log.info("worker %s stopping: %d running jobs have %.1f s to finish",
                 self.id, len(self._running), max(0.0, self._shutdown_deadline - now))

    def stop_now(self, *, force: bool = False) -> None:
        """Stop claiming and cancel every running job (their rows are released).

        With `force`, jobs that ignore the cancellation are abandoned after
        FORCED_ABANDON seconds instead of `abandon_timeout`."""
        self.stop(grace=0)
        if force:
            self._abandon_at = min(self._abandon_at, trio.current_time() + FORCED_ABANDON)
            self._changed()

    def _changed(self) -> None:
        """Wake the loops that wait for a free slot or for the shutdown to progress."""
        self._slot_freed.set()
        self._slot_freed = trio.Event()

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
        with self._startup_scope:  # stop() before the database answered: nothing to undo
            await registry.register(self)
        if self._startup_scope.cancelled_caught:
            task_status.started(self)
            log.info("worker %s stopped before it registered", self.id)
            return
        try:
            async with trio.open_nursery() as services:
                await services.start(registry.heartbeat, self)
                services.start_soon(self.maintenance.run)
                send, recv = trio.open_memory_channel[Outcome](self._buffer)
                services.start_soon(self._complete, recv)
                async with trio.open_nursery() as jobs:
                    listener = self.fairchild.database.listener
                    with listener.subscribe(CHANNEL_INSERT, self._on_insert), \
                            listener.subscribe(CHANNEL_CANCEL, self._on_cancel):
                        task_status.started(self)
                        log.info("worker %s claiming from %s with concurrency %d",
                                 self.id, ", ".join(self.queues) if self.queues else "every queue",
                                 self.concurrency)
                        await self._produce(jobs, send)
                        await self._drain(send)
                # Every job task has ended: the last outcomes are in the channel.
                await send.aclose()
                await self._completer_done.wait()
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
        """Claim while there are free slots and a valid lease, until `stop()`.

        Cancellation: `stop()` cancels the claim scope; a claim in flight is shielded and
        its jobs are started (they then get the grace period like the others)."""
        db = self.fairchild.database
        errors = Throttle(log, "claiming")
        claim_uncertain = False  # a claim failed: it may have committed with its result lost
        with self._claim_scope:
            while True:
                while len(self._running) >= self.concurrency:
                    await self._slot_freed.wait()
                while self.lease_lapsing():  # no claims on a lease we cannot renew
                    await trio.sleep(min(0.1, self.heartbeat_interval / 5))
                self._work_hint = trio.Event()
                try:
                    if await db.listener.ensure():
                        log.debug("LISTEN connection (re)opened")
                    with trio.CancelScope(shield=True):  # a claim that committed must reach a job task
                        if claim_uncertain:
                            # Only this task claims, so every row held under our id that we
                            # do not know (running, or outcome not yet written) is such a one.
                            released = await db.release_unknown_claims(
                                self.id, list(self._max_attempts), self.fairchild.clock())
                            claim_uncertain = False
                            for row in released:
                                log.warning("released job %s: its claim committed but the result was lost",
                                            row["id"], extra={"job_id": str(row["id"])})
                        free = self.concurrency - len(self._running)
                        claim_uncertain = True
                        rows, next_due = await db.claim(self.id, self.queues, free, self.fairchild.clock())
                        claim_uncertain = False
                        for row in rows:
                            self._start(jobs, Job.from_row(row), send)
                except TRANSIENT as exc:
                    await trio.sleep(errors.failed(exc))
                    continue
                errors.recovered()
                if rows:
                    continue  # claim again at once; an empty claim also says when to wake
                delay = self.poll_interval * random.uniform(0.8, 1.2)
                if next_due is not None:
                    delay = min(delay, max(0.0, (next_due - self.fairchild.clock()).total_seconds()))
                with trio.move_on_after(delay):
                    await self._work_hint.wait()

    def _start(self, jobs: trio.Nursery, job: Job, send: trio.MemorySendChannel[Outcome]) -> None:
        execution = Execution(job, trio.CancelScope(deadline=self._shutdown_deadline))
        self._running[job.id] = execution
        self._max_attempts[job.id] = job.max_attempts
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
                    # Blocks while the buffer is full (database unreachable): the job
                    # keeps its slot, so claiming pauses until outcomes are written.
                    await send.send(outcome)
        finally:
            self._running.pop(job.id, None)
            self._changed()

    async def _drain(self, send: trio.MemorySendChannel[Outcome]) -> None:
        """After `stop()`: wait for running jobs (the grace period, then cancellation),
        and abandon those still running at the abandon deadline: release their rows
        ourselves so they run again elsewhere, even if their code ignores cancellation.

        Cancellation: runs inside `run()`'s shielded scope; outside cancellation arrives
        as `stop_now()`, which only moves the deadlines closer."""
        while self._running and trio.current_time() < self._abandon_at:
            with trio.move_on_at(self._abandon_at):
                await self._slot_freed.wait()
        stragglers = [e for e in self._running.values() if e.job.id not in self._abandoned]
        if not stragglers:
            return
        now = self.fairchild.clock()
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
        # Their tasks cannot be awaited (their code shields itself from cancellation), so
        # finish everything else now: the outcomes of the jobs that did end, then the
        # worker row. Then say so, so that a process that owns this pool (the CLI) can
        # exit without them.
        await send.aclose()
        await self._completer_done.wait()
        await registry.deregister(self)
        self.abandoned.set()

    # -- completing ----------------------------------------------------------------------

    async def _complete(self, recv: trio.MemoryReceiveChannel[Outcome]) -> None:
        """Write outcomes in batches until the channel is closed and empty.

        Cancellation: only between batches (a batch being written is shielded); the pool
        cancels it only after the channel is drained."""
        async with recv:
            while True:
                try:
                    batch = [await recv.receive()]
                except trio.EndOfChannel:
                    self._completer_done.set()
                    return
                while len(batch) < 500:
                    try:
                        batch.append(recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write(batch)

    async def _write(self, batch: list[Outcome]) -> None:
        """Write outcomes, retrying with backoff while the database is unreachable.

        Shielded: a cancellation never drops an outcome already computed. Every write is
        fenced, so retrying is safe even after the lease ran out: a write that matches
        nothing is logged and dropped, never retried. While running, it retries until the
        database answers; during shutdown it gives up once this worker's lease has run out
        (the rescuer owns those jobs then). An outcome the database refuses (not a lost
        connection: e.g. a value jsonb cannot hold) is written alone, and if it is refused
        alone it is replaced by a failure of kind ``storage``."""
        db = self.fairchild.database
        errors = Throttle(log, "writing job outcomes")
        with trio.CancelScope(shield=True):
            while True:
                try:
                    report = await db.finish(batch, self.fairchild.clock())
                except ConnectionLost as exc:
                    if self._stopping and trio.current_time() > self.lease_valid_until:
                        log.error("giving up on %d job outcomes: the database is unreachable and this "
                                  "worker's lease expired (the rescuer will run the jobs again)", len(batch))
                        return
                    await trio.sleep(errors.failed(exc))
                    continue
                except DatabaseError as exc:
                    if len(batch) > 1:
                        for outcome in batch:
                            await self._write([outcome])
                        return
                    replacement = self._unstorable(batch[0], exc)
                    if replacement is None:
                        if self._stopping and trio.current_time() > self.lease_valid_until:
                            log.error("giving up on the outcome of job %s: %s", batch[0].job_id, exc)
                            return
                        await trio.sleep(errors.failed(exc))
                        continue
                    batch = [replacement]
                    continue
                errors.recovered()
                if any(o.state in ("retryable", "available") for o in batch):
                    # A retry may fall due before the idle producer's next poll: let it
                    # claim again, which also tells it when the next job is due.
                    self._work_hint.set()
                for job_id in report.applied:
                    self._max_attempts.pop(job_id, None)
                for job_id in report.fenced:
                    self._max_attempts.pop(job_id, None)
                    log.warning("outcome of job %s not written: its lease was lost (another attempt owns it)",
                                job_id, extra={"job_id": str(job_id)})
                return

    def _unstorable(self, outcome: Outcome, exc: BaseException) -> Outcome | None:
        """The failure to write instead of an outcome the database refused (None if
        `outcome` is already such a failure)."""
        if outcome.error is not None and outcome.error.get("kind") == "storage":
            return None
        log.error("the database refused the outcome of job %s (%s: %s); recording a failure instead",
                  outcome.job_id, type(exc).__name__, exc, extra={"job_id": str(outcome.job_id)})
        now = self.fairchild.clock()
        entry = error_entry(outcome.attempt, "storage", now,
                            message=f"the outcome could not be stored: {type(exc).__name__}: {exc}")
        spent = outcome.attempt >= self._max_attempts.get(outcome.job_id, 0)
        if spent:
            return Outcome(job_id=outcome.job_id, attempt=outcome.attempt, worker_id=outcome.worker_id,
                           state="discarded", error=entry)
        return Outcome(job_id=outcome.job_id, attempt=outcome.attempt, worker_id=outcome.worker_id,
                       state="retryable", error=entry,
                       scheduled_at=now + timedelta(seconds=self.backoff(outcome.attempt)))

    def lease_lapsing(self) -> bool:
        """True from one heartbeat interval before the lease runs out until it is renewed."""
        return trio.current_time() >= self.lease_valid_until - self.heartbeat_interval

    def self_fence(self) -> int:
        """Cancel every running job: this worker could not renew its lease in time. Their
        rows are released by fenced writes. Returns how many jobs were newly cancelled."""
        fenced = 0
        for execution in list(self._running.values()):
            if execution.reason is None and not execution.scope.cancel_called:
                fenced += 1
            execution.cancel(CancelReason.LEASE_LOST)
        return fenced
