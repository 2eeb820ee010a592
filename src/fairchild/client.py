"""`Fairchild`: the client. Connects, installs, enqueues, reads and waits."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import trio
import trio_asyncio

from . import context
from .db import CHANNEL_FINAL, ConnectionLost, Database, units
from .db import queries as q
from .errors import InvalidJobState, JobNotFound, NotConnected
from .job import Job, workflow_state
from .task import NewJob, check_queue

__all__ = ["Fairchild", "Clock", "utcnow", "redact_dsn"]

log = logging.getLogger("fairchild")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default clock: the current time in UTC."""
    return datetime.now(timezone.utc)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***`` (for logs)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)


def _as_id(job: Job | uuid.UUID | str) -> uuid.UUID:
    if isinstance(job, Job):
        return job.id
    if isinstance(job, uuid.UUID):
        return job
    return uuid.UUID(str(job))


class Fairchild:
    """A connection to one Fairchild database.

    ``async with Fairchild(url) as fairchild:`` opens a trio-asyncio loop if none is
    running, connects, and makes this client the one that ``task.enqueue`` uses inside
    the block. ``await fairchild.connect()`` / ``await fairchild.close()`` do the same
    inside a loop you opened yourself (``trio_asyncio.open_loop()``).

    With no `url`, ``$FAIRCHILD_DATABASE_URL`` is used, else the shared embedded
    PostgreSQL in ``$FAIRCHILD_DATA_DIR`` (default ``.fairchild/``).

    Cancellation, for every method that talks to the database: each is one unit of work
    in one transaction; a Trio cancellation rolls it back before `Cancelled` reaches you
    (nothing half-written, the connection left idle). A write that had already committed
    stays committed: after a cancelled `cancel_job` or `retry_job`, read the job again.
    `close()` is shielded and always completes.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool_size: int = 10,
        clock: Clock = utcnow,
        data_dir: os.PathLike[str] | str | None = None,
    ) -> None:
        self._url = url or os.environ.get("FAIRCHILD_DATABASE_URL") or None
        self._pool_size = pool_size
        self._data_dir = data_dir
        self.clock = clock
        self._db: Database | None = None
        self._embedded: Any = None
        self._stack: AsyncExitStack | None = None
        self._client_token: Any = None

    # -- lifecycle -----------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._db is not None and self._db.is_open

    @property
    def database(self) -> Database:
        """The database bridge (for the worker and the web app)."""
        if self._db is None:
            raise NotConnected("this Fairchild client is not connected")
        return self._db

    @property
    def url(self) -> str | None:
        """The DSN in use (None before connecting to the embedded server)."""
        return self._url

    @property
    def is_embedded(self) -> bool:
        return self._embedded is not None

    async def connect(self) -> None:
        """Open the pool (starting or attaching to the embedded server if needed).

        Needs a running trio-asyncio loop (`async with Fairchild()` opens one).
        Cancellation: whatever was opened is closed again.
        """
        if self.is_connected:
            return
        if trio_asyncio.current_loop.get() is None:
            raise NotConnected(
                "no trio-asyncio loop is running: use `async with Fairchild(...)`, or open "
                "`trio_asyncio.open_loop()` around `connect()`"
            )
        try:
            if self._url is None:
                from . import embedded

                directory = None if self._data_dir is None else os.fspath(self._data_dir)
                self._embedded = await trio.to_thread.run_sync(
                    lambda: embedded.acquire(None if directory is None else embedded.Path(directory))
                )
                dsn = self._embedded.url
                log.info("using the embedded PostgreSQL in %s", self._embedded.pgdata)
            else:
                dsn = self._url
                log.info("using PostgreSQL at %s", redact_dsn(dsn))
            db = Database(dsn, max_size=self._pool_size)
            await db.open()
            self._db = db
        except BaseException:
            await self._release_embedded()
            raise
        context.register_default(self)

    async def close(self) -> None:
        """Close the pool and release the embedded server. Shielded: always completes."""
        with trio.CancelScope(shield=True):
            context.unregister_default(self)
            if self._db is not None:
                db, self._db = self._db, None
                await db.close()
            await self._release_embedded()

    async def _release_embedded(self) -> None:
        if self._embedded is not None:
            server, self._embedded = self._embedded, None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(server.release)

    async def __aenter__(self) -> Fairchild:
        stack = AsyncExitStack()
        try:
            if trio_asyncio.current_loop.get() is None:
                await stack.enter_async_context(trio_asyncio.open_loop())
            await self.connect()
            stack.push_async_callback(self.close)
            self._client_token = context._client.set(self)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client_token is not None:
            try:
                context._client.reset(self._client_token)
            except ValueError:  # exited from another context; nothing to restore
                pass
            self._client_token = None
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- schema --------------------------------------------------------------------

    async def install(self) -> list[int]:
        """Create every table and index (idempotent); returns the versions applied now."""
        applied = await self.database.migrate()
        if applied:
            log.info("installed schema version %d", applied[-1].version)
        return [m.version for m in applied]

    async def migrate(self) -> list[int]:
        """Apply pending migrations (idempotent, safe to run concurrently)."""
        applied = await self.database.migrate()
        for m in applied:
            log.info("applied migration %04d_%s", m.version, m.name)
        return [m.version for m in applied]

    # -- jobs ----------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[Job]:
        """Insert validated jobs (see `Task.prepare`) in one transaction; return them."""
        rows = await self.database.insert_jobs(jobs, self.clock(), connection)
        by_id = {r["id"]: Job.from_row(r) for r in rows}
        return [by_id[j.id] for j in jobs if j.id in by_id]

    async def get_job(self, job: Job | uuid.UUID | str) -> Job:
        """The job's current state; `JobNotFound` if it does not exist."""
        job_id = _as_id(job)
        row = await self.database.fetchrow(q.GET_JOB, job_id)
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_row(row)

    async def wait(self, job: Job | uuid.UUID | str, timeout: float | None = None) -> Job:
        """Wait until the job is final and return it.

        For a workflow root this means the whole workflow is final. Woken by NOTIFY on
        ``fairchild_final``; after a lost LISTEN connection it reconnects and re-reads.
        Raises `TimeoutError` after `timeout` seconds. Cancellation: returns nothing and
        leaves no subscription behind.
        """
        job_id = _as_id(job)
        db = self.database
        wake = trio.Event()
        watch_all = False
        needle = str(job_id)

        def on_final(payload: str | None) -> None:
            if payload is None or watch_all or needle in payload:
                wake.set()

        # move_on_after + an explicit TimeoutError: trio.TooSlowError is not a TimeoutError.
        with trio.move_on_after(timeout if timeout is not None else math.inf):
            with db.listener.subscribe(CHANNEL_FINAL, on_final):
                while True:
                    try:
                        await db.listener.ensure()
                    except ConnectionLost as exc:
                        log.warning("wait(%s): cannot LISTEN (%s); retrying", job_id, exc)
                        await trio.sleep(1)
                        continue
                    wake = trio.Event()
                    row = await db.fetchrow(q.WAIT_STATUS, job_id)
                    if row is None:
                        raise JobNotFound(job_id)
                    if row["state"] in ("completed", "discarded", "cancelled"):
                        if row["open_in_workflow"] == 0:
                            return await self.get_job(job_id)
                        watch_all = True
                    with trio.move_on_after(60):  # a safety net; NOTIFY normally wakes us
                        await wake.wait()
        raise TimeoutError(f"job {job_id} is not final after {timeout:g} s")

    async def fetch_results(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """Recorded results of the given jobs, in one query."""
        return await self.database.fetch_results(ids)

    # -- workflows ---------------------------------------------------------------------

    async def list_workflows(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Workflows (a root job and the jobs it led to), newest first.

        Each is a dict: ``workflow_id`` (the root's id), ``root_task``, ``state``
        (``running`` while any job is unfinished, then ``completed`` if every job
        completed, else ``failed``), ``total``, ``counts`` (jobs by state),
        ``inserted_at`` and ``finished_at`` (None while running).
        """
        rows = await self.database.fetch(q.WORKFLOWS_LIST, limit, offset)
        out = []
        for r in rows:
            counts = json.loads(r["counts"])
            state = workflow_state(counts)
            out.append({
                "workflow_id": r["workflow_id"],
                "root_task": r["root_task"],
                "state": state,
                "total": r["total"],
                "counts": counts,
                "inserted_at": r["inserted_at"],
                "finished_at": r["finished_at"] if state != "running" else None,
            })
        return out

    async def get_workflow(self, workflow_id: Job | uuid.UUID | str) -> dict[str, Any]:
        """One workflow: ``workflow_id``, ``state`` (as in `list_workflows`), ``root_task``,
        ``total``, ``counts``, ``jobs`` (every `Job`, in insertion order) and ``edges``
        (``(upstream_id, downstream_id)`` pairs), read from one snapshot.
        `JobNotFound` if no job belongs to it."""
        wid = _as_id(workflow_id)
        rows, edge_rows = await self.database.call(units.fetch_workflow, wid)
        if not rows:
            raise JobNotFound(wid)
        jobs = [Job.from_row(r) for r in rows]
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        state = workflow_state(counts)
        root = next((job for job in jobs if job.id == wid), jobs[0])
        finished = [job.finished_at for job in jobs if job.finished_at is not None]
        return {
            "workflow_id": wid,
            "root_task": root.task,
            "state": state,
            "total": len(jobs),
            "counts": counts,
            "inserted_at": root.inserted_at,
            "finished_at": max(finished) if state != "running" and finished else None,
            "jobs": jobs,
            "edges": [(e["upstream_id"], e["downstream_id"]) for e in edge_rows],
        }

    # -- operator controls -------------------------------------------------------------

    async def cancel_job(self, job: Job | uuid.UUID | str, reason: str = "cancelled by an operator") -> Job:
        """Cancel a job. One that has not started never runs (its dependents are cancelled
        too); a running one has its cancel scope cancelled by the worker holding it (within
        a second, through NOTIFY) and then ends `cancelled`. Returns the job as it is now.
        `InvalidJobState` if the job is already final."""
        job_id = _as_id(job)
        before = await self.database.call(units.cancel_job, job_id, reason, self.clock())
        if before is None:
            raise JobNotFound(job_id)
        if before in ("completed", "discarded", "cancelled"):
            raise InvalidJobState(f"job {job_id} is already {before}; only unfinished jobs can be cancelled")
        return await self.get_job(job_id)

    async def retry_job(self, job: Job | uuid.UUID | str) -> Job:
        """Run a discarded or cancelled job again (with one more attempt if its attempts are
        spent). A job with an upstream that has not completed is `blocked` until it has:
        to resume a failed chain, retry the failed job and the jobs cancelled because of
        it, in any order. `InvalidJobState` for a job in any other state, or for a parent
        whose children have not all finished (they belong to the attempt that spawned
        them: wait for them, or cancel them, first)."""
        job_id = _as_id(job)
        row, unfinished = await self.database.call(units.retry_job, job_id, self.clock())
        if unfinished:
            raise InvalidJobState(
                f"job {job_id} still has {unfinished} unfinished children; wait for them (or cancel them) "
                "before running it again"
            )
        if row is None:
            current = await self.get_job(job_id)  # raises JobNotFound
            raise InvalidJobState(
                f"job {job_id} is {current.state.value}; only discarded or cancelled jobs can be retried"
            )
        return Job.from_row(row)

    async def pause_queue(self, queue: str) -> None:
        """Stop every worker from claiming jobs of `queue` (persisted; running jobs finish)."""
        await self.database.call(units.set_queue_paused, check_queue(queue), True, self.clock())

    async def resume_queue(self, queue: str) -> None:
        """Let workers claim jobs of `queue` again."""
        await self.database.call(units.set_queue_paused, check_queue(queue), False, self.clock())
