"""The worker's row in `fairchild_workers`: register, heartbeat (lease), deregister."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import trio

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
                              pool.concurrency, now, now + timedelta(seconds=pool.lease))
        except TRANSIENT as exc:
            await trio.sleep(errors.failed(exc))
            continue
        pool.lease_valid_until = started + pool.lease
        return


async def heartbeat(pool: WorkerPool, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Renew the lease every `heartbeat_interval` until cancelled.

    If the lease cannot be renewed before one interval short of its expiry, the pool
    cancels its own jobs (self-fencing): by the time another worker may rescue them,
    they have stopped here. If the row was removed (taken for dead), the same happens
    and the worker registers again.
    """
    db = pool.fairchild.database
    errors = Throttle(log, "renewing the worker lease")
    task_status.started()
    while True:
        await trio.sleep(pool.heartbeat_interval)
        now = pool.fairchild.clock()
        started = trio.current_time()
        state = "stopping" if pool.stopping else "running"
        try:
            row = await db.fetchrow(q.HEARTBEAT, pool.id, now, now + timedelta(seconds=pool.lease), state)
        except TRANSIENT as exc:
            errors.failed(exc)
            if trio.current_time() >= pool.lease_valid_until - pool.heartbeat_interval:
                if pool.running_jobs:
                    log.error("worker %s cannot renew its lease; cancelling its %d jobs",
                              pool.id, len(pool.running_jobs))
                pool.self_fence()
            continue
        errors.recovered()
        if row is None:
            log.error("worker %s was taken for dead (its row is gone); cancelling its jobs and registering again", pool.id)
            pool.self_fence()
            await register(pool)
            continue
        pool.lease_valid_until = started + pool.lease


async def deregister(pool: WorkerPool) -> None:
    """Remove the worker row. Shielded, bounded; a failure only leaves it to expire."""
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        try:
            await pool.fairchild.database.fetchrow(q.DEREGISTER_WORKER, pool.id)
        except TRANSIENT as exc:
            log.warning("could not remove worker row %s (%s); it expires with its lease", pool.id, exc)
