"""The worker's row in `fairchild_workers`: register, heartbeat (lease), deregister."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import trio

from .._version import __version__
from ..db import ConnectionLost, DatabaseError
from ..db import queries as q
from .throttle import Throttle

if TYPE_CHECKING:
    from .pool import WorkerPool

log = logging.getLogger("fairchild.worker")
TRANSIENT = (*ConnectionLost, DatabaseError)


async def register(pool: WorkerPool) -> None:
    """Insert the worker row with a fresh lease. Retries while the database is down.

    Cancellation: nothing is registered, or the row is left to expire with its lease.
    """
    db = pool.fairchild.database
    errors = Throttle(log, "registering the worker")
    while True:
        now = pool.fairchild.clock()
        started = trio.current_time()
        try:
            await db.fetchrow(q.REGISTER_WORKER, pool.id, pool.hostname, pool.pid, pool.queues,
                              pool.concurrency, now, now + timedelta(seconds=pool.lease), __version__)
        except TRANSIENT as exc:
            await trio.sleep(errors.failed(exc))
            continue
        pool.lease_valid_until = started + pool.lease
        return


async def heartbeat(pool: WorkerPool, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Renew the lease every `heartbeat_interval` until cancelled.

    Each renewal is bounded (a hung connection counts as a failure). A watchdog cancels
    the pool's jobs (self-fencing) from one interval before the lease runs out, so by the
    time another worker may rescue them they have stopped here; their rows are released
    by fenced writes. If the row was removed (taken for dead), the same happens and the
    worker registers again. Each renewal also picks up operator cancel requests for jobs
    held here (the fallback for a lost NOTIFY).

    Cancellation: stops renewing; the lease then runs out on its own.
    """
    db = pool.fairchild.database
    errors = Throttle(log, "renewing the worker lease")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_lease, pool)
        task_status.started()
        while True:
            await trio.sleep(pool.heartbeat_interval)
            now = pool.fairchild.clock()
            started = trio.current_time()
            state = "stopping" if pool.stopping else "running"
            try:
                with trio.fail_after(max(pool.heartbeat_interval, pool.lease / 3)):
                    cancel_requests = await db.heartbeat(pool.id, now, now + timedelta(seconds=pool.lease), state)
            except (*TRANSIENT, trio.TooSlowError) as exc:
                errors.failed(exc)
                continue
            errors.recovered()
            if cancel_requests is None:
                log.error("worker %s was taken for dead (its row is gone); cancelling its jobs and registering again",
                          pool.id)
                pool.self_fence()
                await register(pool)
                continue
            pool.lease_valid_until = started + pool.lease
            for job_id in cancel_requests:
                pool.cancel_job(job_id)


async def _watch_lease(pool: WorkerPool) -> None:
    """Self-fence when the lease is about to run out unrenewed.

    Cancellation: runs until cancelled (with the heartbeat); nothing to undo."""
    lapsed = False
    while True:
        fence_at = pool.lease_valid_until - pool.heartbeat_interval
        now = trio.current_time()
        if now < fence_at:
            if lapsed:
                log.info("worker %s renewed its lease again", pool.id)
                lapsed = False
            await trio.sleep(min(fence_at - now, pool.heartbeat_interval))
            continue
        cancelled = pool.self_fence()
        if cancelled or not lapsed:
            log.error("worker %s cannot renew its lease (it runs out in %.1f s): not claiming, and "
                      "cancelling its %d running jobs", pool.id, max(0.0, pool.lease_valid_until - now), cancelled)
        lapsed = True
        await trio.sleep(min(0.1, pool.heartbeat_interval / 5))


async def deregister(pool: WorkerPool) -> None:
    """Remove the worker row. Shielded, bounded; a failure only leaves it to expire."""
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        try:
            await pool.fairchild.database.fetchrow(q.DEREGISTER_WORKER, pool.id)
        except TRANSIENT as exc:
            log.warning("could not remove worker row %s (%s); it expires with its lease", pool.id, exc)
