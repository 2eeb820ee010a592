"""Units of work: plain asyncio coroutines, each one whole transaction.

This module and `database.py` are the only places that run asyncpg. Trio code calls each
unit exactly once through `trio_asyncio.aio_as_trio` (see `Database`), so a Trio
cancellation cancels one asyncio task, whose ``async with conn.transaction()`` then rolls
back before Trio sees the cancellation: no aborted transaction is ever left on a pooled
connection (asyncio's cancellation is edge-triggered, so the ROLLBACK itself runs).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import asyncio
import asyncpg

from ..errors import InvalidArguments
from ..task import NewJob
from . import queries as q

T = TypeVar("T")

FINAL = ("completed", "discarded", "cancelled")
DEAD = ("discarded", "cancelled")
CHANNEL_INSERT = "fairchild_insert"  # payload: a queue name with newly available jobs
CHANNEL_FINAL = "fairchild_final"  # payload: comma-separated ids of jobs that became final
CHANNEL_CANCEL = "fairchild_cancel"  # payload: id of a running job an operator cancelled
# payload: what changed without a job becoming final or available: "running" (a claim),
# "retryable" (a failed attempt waits for its retry), "queue" (paused). For dashboards.
CHANNEL_STATE = "fairchild_state"
NOTIFY_PAYLOAD_LIMIT = 1000  # bytes; PostgreSQL allows 8000, we stay well under


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed job, to be written fenced on (id, attempt, worker)."""

    job_id: uuid.UUID
    attempt: int
    worker_id: uuid.UUID
    state: str  # completed | waiting | retryable | discarded | available | cancelled
    result_json: str | None = None
    result_job_id: uuid.UUID | None = None
    error: dict[str, Any] | None = None
    refund: bool = False  # an interrupted attempt does not count
    scheduled_at: datetime | None = None
    children: Sequence[NewJob] = ()
    cancel_reason: str | None = None


@dataclass(slots=True)
class FinishReport:
    applied: list[uuid.UUID] = field(default_factory=list)
    fenced: list[uuid.UUID] = field(default_factory=list)  # lease lost: the write matched nothing


async def retry_on_deadlock(fn: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Run a unit again when PostgreSQL picks it as a deadlock victim (it rolled back)."""
    for attempt in range(attempts):
        try:
            return await fn()
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _chunks(items: Sequence[str], sep: str = ",") -> list[str]:
    """Join items into payloads of at most NOTIFY_PAYLOAD_LIMIT bytes."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for item in items:
        if current and size + len(item) + 1 > NOTIFY_PAYLOAD_LIMIT:
            out.append(sep.join(current))
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current:
        out.append(sep.join(current))
    return out


async def _notify(conn: asyncpg.Connection, channel: str, payloads: Sequence[str]) -> None:
    if payloads:
        await conn.execute(q.NOTIFY, channel, list(payloads))


# -- enqueue -------------------------------------------------------------------------


async def _insert(conn: asyncpg.Connection, jobs: Sequence[NewJob], now: datetime) -> list[asyncpg.Record]:
    """Insert jobs and their edges inside the caller's transaction; returns inserted rows."""
    batch_ids = {j.id for j in jobs}
    external = sorted({u for j in jobs for u in j.upstreams if u not in batch_ids})
    upstream: dict[uuid.UUID, asyncpg.Record] = {}
    if external:
        upstream = {r["id"]: r for r in await conn.fetch(q.LOCK_UPSTREAMS, external)}
        missing = [str(u) for u in external if u not in upstream]
        if missing:
            raise InvalidArguments(f"a Future or Job passed as an argument refers to no job: {', '.join(missing)}")

    cols: list[list[Any]] = [[] for _ in range(14)]
    edges_up: list[uuid.UUID] = []
    edges_down: list[uuid.UUID] = []
    for j in jobs:
        pending = 0
        dead: asyncpg.Record | None = None
        for u in j.upstreams:
            edges_up.append(u)
            edges_down.append(j.id)
            info = upstream.get(u)
            if info is None or info["state"] != "completed":
                pending += 1
            if info is not None and info["state"] in DEAD and dead is None:
                dead = info
        scheduled_at = j.scheduled_at or now
        if dead is not None:
            state = "cancelled"
            reason = f"upstream {dead['id']} ({dead['task']}) was {dead['state']}"
        elif pending:
            state, reason = "blocked", None
        else:
            state, reason = ("scheduled" if scheduled_at > now else "available"), None
        workflow_id = j.workflow_id
        if workflow_id is None and j.upstreams and j.upstreams[0] in upstream:
            workflow_id = upstream[j.upstreams[0]]["workflow_id"]
        for col, value in zip(
            cols,
            (j.id, j.task, j.queue, j.args_json, state, j.priority, j.max_attempts, j.timeout,
             json.dumps(j.tags), scheduled_at, j.parent_id, workflow_id or j.id, pending, reason),
            strict=True,
        ):
            col.append(value)

    rows = await conn.fetch(q.INSERT_JOBS, *cols[:13], now, cols[13])
    roots = sorted({r["workflow_id"] for r in rows if r["workflow_id"] != r["id"]})
    if roots:
        await conn.execute(q.MARK_WORKFLOWS, roots)
    if edges_up:
        await conn.execute(q.INSERT_EDGES, edges_up, edges_down)
    # Workers are woken by the fairchild_jobs_notify_insert trigger.
    cancelled = [r for r in rows if r["state"] == "cancelled"]
    if cancelled:
        await _settle(conn, cancelled, now)
    return rows


async def insert_jobs(
    pool: asyncpg.Pool, jobs: Sequence[NewJob], now: datetime, connection: asyncpg.Connection | None
) -> list[asyncpg.Record]:
    """Insert jobs (and edges) in one transaction; on `connection`, inside the caller's."""
    if connection is not None:
        async with connection.transaction():  # a savepoint when the caller is in a transaction
            return await _insert(connection, jobs, now)

    async def unit() -> list[asyncpg.Record]:
        async with pool.acquire() as conn:
            if not any(j.upstreams for j in jobs):
                return await _insert(conn, jobs, now)  # one statement: atomic on its own
            async with conn.transaction():
                return await _insert(conn, jobs, now)

    return await retry_on_deadlock(unit)


# -- claim ---------------------------------------------------------------------------


async def claim(
    pool: asyncpg.Pool, worker_id: uuid.UUID, queues: Sequence[str] | None, limit: int, now: datetime
) -> tuple[list[asyncpg.Record], datetime | None]:
    """Claim up to `limit` due jobs in one statement. When none was due, also return when
    the next scheduled one falls due (a second statement, off the latency path)."""
    async with pool.acquire() as conn:
        if queues is None:
            rows = await conn.fetch(q.CLAIM_ANY, now, limit, worker_id)
        else:
            rows = await conn.fetch(q.CLAIM_QUEUES, now, limit, worker_id, list(queues))
        next_due = None
        if not rows:
            if queues is None:
                next_due = await conn.fetchval(q.NEXT_DUE_ANY)
            else:
                next_due = await conn.fetchval(q.NEXT_DUE_QUEUES, list(queues))
        return list(rows), next_due


# -- finish --------------------------------------------------------------------------


async def _settle(conn: asyncpg.Connection, final: Sequence[asyncpg.Record], now: datetime) -> None:
    """Apply what newly final jobs mean to their dependents and parents, level by level.

    Completed jobs unblock dependents; dead ones cancel them; final children settle their
    waiting parents, which may become final in turn. One statement per kind per level.
    """
    level = list(final)
    all_final: list[str] = []
    wake: set[str] = set()
    while level:
        all_final.extend(str(r["id"]) for r in level)
        completed = [r["id"] for r in level if r["state"] == "completed"]
        dead = [r["id"] for r in level if r["state"] in DEAD]
        children = [r for r in level if r["parent_id"] is not None]
        following: list[asyncpg.Record] = []
        if completed:
            for r in await conn.fetch(q.UNBLOCK_DEPENDENTS, completed, now):
                if r["state"] == "available":
                    wake.add(r["queue"])
        if dead:
            following.extend(await conn.fetch(q.CANCEL_DEPENDENTS, dead, now))
        if children:
            parents = await conn.fetch(
                q.SETTLE_PARENTS,
                [r["id"] for r in children],
                [r["parent_id"] for r in children],
                [r["task"] for r in children],
                [r["state"] for r in children],
                now,
            )
            following.extend(r for r in parents if r["state"] in FINAL)
        level = following
    await _notify(conn, CHANNEL_INSERT, sorted(wake))
    await _notify(conn, CHANNEL_FINAL, _chunks(all_final))


async def finish(pool: asyncpg.Pool, outcomes: Sequence[Outcome], now: datetime) -> FinishReport:
    """Write a batch of outcomes in one transaction, each fenced on (id, attempt, worker).

    A finishing job's children and their edges are inserted in the same transaction, and
    only when its own write matched: a worker that lost its lease spawns nothing.
    """
    ordered = sorted(outcomes, key=lambda o: o.job_id)  # one lock order for every batch

    async def unit() -> FinishReport:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                q.FINISH,
                [o.job_id for o in ordered],
                [o.attempt for o in ordered],
                [o.worker_id for o in ordered],
                [o.state for o in ordered],
                [o.result_json for o in ordered],
                [o.result_job_id for o in ordered],
                [json.dumps(o.error) if o.error is not None else None for o in ordered],
                now,
                [int(o.refund) for o in ordered],
                [o.scheduled_at for o in ordered],
                [len(o.children) for o in ordered],
                [o.cancel_reason for o in ordered],
            )
            applied = {r["id"] for r in rows}
            children = [c for o in ordered if o.job_id in applied for c in o.children]
            if children:
                await _insert(conn, children, now)
            await _settle(conn, [r for r in rows if r["state"] in FINAL], now)
            wake = sorted({r["queue"] for r in rows if r["state"] == "available"})
            await _notify(conn, CHANNEL_INSERT, wake)
            if any(r["state"] == "retryable" for r in rows):
                await _notify(conn, CHANNEL_STATE, ["retryable"])
            return FinishReport(
                applied=[o.job_id for o in ordered if o.job_id in applied],
                fenced=[o.job_id for o in ordered if o.job_id not in applied],
            )

    return await retry_on_deadlock(unit)


# -- reading -------------------------------------------------------------------------


async def fetch_one(pool: asyncpg.Pool, sql: str, *args: Any) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(sql, *args)


async def fetch_all(pool: asyncpg.Pool, sql: str, *args: Any) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(await conn.fetch(sql, *args))


async def fetch_results(pool: asyncpg.Pool, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """Every upstream's recorded result, in one query."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(q.FETCH_RESULTS, list(ids))
        return {r["id"]: (json.loads(r["result"]) if r["result"] is not None else None) for r in rows}


# -- workers -----------------------------------------------------------------------------


async def heartbeat(
    pool: asyncpg.Pool, worker_id: uuid.UUID, now: datetime, expires: datetime, state: str
) -> list[uuid.UUID] | None:
    """Renew a worker's lease. None when its row is gone (it was taken for dead); else
    the ids of jobs it holds that an operator asked to cancel."""
    async with pool.acquire() as conn:
        if await conn.fetchval(q.HEARTBEAT, worker_id, now, expires, state) is None:
            return None
        return [r["id"] for r in await conn.fetch(q.CANCEL_REQUESTED, worker_id)]


async def release_unknown_claims(
    pool: asyncpg.Pool, worker_id: uuid.UUID, known: Sequence[uuid.UUID], now: datetime
) -> list[asyncpg.Record]:
    """Release rows running under `worker_id` other than `known` (claims whose result was
    lost): back to available with the attempt refunded. Returns the released rows."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(q.RELEASE_UNKNOWN_CLAIMS, worker_id, list(known), now)
        await _settle(conn, [r for r in rows if r["state"] in FINAL], now)
        await _notify(conn, CHANNEL_INSERT, sorted({r["queue"] for r in rows if r["state"] == "available"}))
        return list(rows)


# -- maintenance -----------------------------------------------------------------------

MAINTENANCE_LOCK_KEY = 0x46414952_4D41  # "FAIRMA"


@dataclass(slots=True)
class MaintenanceReport:
    leader: bool = False
    rescued: list[asyncpg.Record] = field(default_factory=list)
    workers_removed: int = 0
    pruned: int = 0


async def maintain(
    pool: asyncpg.Pool,
    now: datetime,
    rescue_batch: int,
    prune_cutoffs: tuple[datetime, datetime, datetime] | None,
    prune_batch: int,
) -> MaintenanceReport:
    """One maintenance pass, done by whichever process takes the advisory lock first.

    Rescues orphaned jobs (settling any that end discarded), removes dead worker rows,
    then prunes old finished workflows in a bounded batch. `prune_cutoffs` holds the
    newest `finished_at` to prune for completed, cancelled and discarded jobs.
    """
    report = MaintenanceReport()
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(q.MAINTENANCE_LOCK, MAINTENANCE_LOCK_KEY):
            return report
        report.leader = True
        rescued = await conn.fetch(q.RESCUE_ORPHANS, now, rescue_batch)
        report.rescued = list(rescued)
        await _settle(conn, [r for r in rescued if r["state"] in FINAL], now)
        await _notify(conn, CHANNEL_INSERT, sorted({r["queue"] for r in rescued if r["state"] == "available"}))
        status = await conn.execute(q.DELETE_DEAD_WORKERS, now)
        report.workers_removed = int(status.split()[-1])
        if prune_cutoffs is not None:
            newest = max(prune_cutoffs)
            status = await conn.execute(q.PRUNE, newest, *prune_cutoffs, prune_batch)
            report.pruned = int(status.split()[-1])
    return report


# -- operator controls ------------------------------------------------------------------


async def cancel_job(pool: asyncpg.Pool, job_id: uuid.UUID, reason: str, now: datetime) -> str | None:
    """Cancel a job: one that has not started ends `cancelled` now (its dependents too);
    for a running one, the request is persisted and the worker holding it is told
    (NOTIFY) to cancel its scope; it also finds the request at its next heartbeat, and
    a rescue of the job ends it `cancelled`. Returns the job's state before the call
    (None if there is no such job)."""
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval(q.LOCK_JOB_STATE, job_id)
        if state is None:
            return None
        if state == "running":
            await conn.execute(q.REQUEST_CANCEL, job_id, now)
            await _notify(conn, CHANNEL_CANCEL, [str(job_id)])
        else:
            rows = await conn.fetch(q.CANCEL_QUEUED, job_id, now, reason)
            await _settle(conn, rows, now)
        return str(state)


async def retry_job(
    pool: asyncpg.Pool, job_id: uuid.UUID, now: datetime
) -> tuple[asyncpg.Record | None, int]:
    """Make a discarded or cancelled job run again (granting one more attempt if its
    attempts are spent): available, or blocked while an upstream has not completed.
    Returns (the job, or None if it is not in one of those states or still has
    unfinished children; the number of its unfinished children)."""
    async with pool.acquire() as conn, conn.transaction():
        unfinished = await conn.fetchval(q.UNFINISHED_CHILDREN, job_id)
        if unfinished:
            return None, unfinished
        row = await conn.fetchrow(q.RETRY_JOB, job_id, now)
        if row is not None and row["state"] == "available":
            await _notify(conn, CHANNEL_INSERT, [row["queue"]])
        return row, 0


async def set_queue_paused(pool: asyncpg.Pool, queue: str, paused: bool, now: datetime) -> None:
    """Pause or resume a queue. Claims read the flag directly, so every worker obeys at its
    next claim; a resume also wakes the workers of that queue."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(q.SET_QUEUE_PAUSED, queue, paused, now)
        if paused:
            await _notify(conn, CHANNEL_STATE, ["queue"])
        else:
            await _notify(conn, CHANNEL_INSERT, [queue])


# -- workflows -------------------------------------------------------------------------


async def fetch_workflow(
    pool: asyncpg.Pool, workflow_id: uuid.UUID
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """A workflow's jobs and edges, read from one snapshot (repeatable read)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        jobs = await conn.fetch(q.WORKFLOW_JOBS, workflow_id)
        edges = await conn.fetch(q.WORKFLOW_EDGES, workflow_id) if jobs else []
        return list(jobs), list(edges)
