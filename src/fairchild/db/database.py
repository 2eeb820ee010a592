"""The one bridge between Trio and asyncio/asyncpg.

`Database` owns the asyncpg pool and a dedicated LISTEN connection. Every method crosses
the bridge exactly once, running one unit of work from `units` (a whole transaction in
asyncio). Nothing here holds an asyncio transaction open across a Trio checkpoint.

Cancellation, for every method: a Trio cancellation cancels the asyncio task running the
unit; asyncpg sends the server a cancel request and the unit's transaction rolls back
before the `trio.Cancelled` reaches the caller. Nothing is half-written, and the pooled
connection is left idle (not in an aborted transaction). A unit that already committed
when the cancellation lands still raises `Cancelled`: callers that must not lose the
outcome (a claim) shield the call and hand its result on before the next checkpoint.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import asyncpg
import trio
from trio_asyncio import aio_as_trio

from ..task import NewJob
from . import migrations, queries, units
from .units import CHANNEL_CANCEL, CHANNEL_FINAL, CHANNEL_INSERT, CHANNEL_STATE, FinishReport, Outcome

__all__ = [
    "transaction",
    "Database",
    "Listener",
    "Outcome",
    "FinishReport",
    "CHANNEL_INSERT",
    "CHANNEL_FINAL",
    "CHANNEL_CANCEL",
    "CHANNEL_STATE",
    "ConnectionLost",
    "DatabaseError",
    "QueryCanceledError",
]

log = logging.getLogger("fairchild.db")
P = ParamSpec("P")
T = TypeVar("T")

# Errors that mean "the server or the connection went away": callers retry these.
ConnectionLost: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    # asyncpg can leave a connection whose backend was terminated in a corrupt protocol
    # state ("cannot switch to state 12; another operation (2) is in progress",
    # MagicStack/asyncpg#1069): treated as a lost connection, and `Database.call`
    # replaces the pool's connections.
    asyncpg.InternalClientError,
    TimeoutError,
)
DatabaseError = asyncpg.PostgresError
QueryCanceledError = asyncpg.QueryCanceledError  # statement_timeout / cancel request


async def _reset(conn: asyncpg.Connection) -> None:
    """Pool reset on release. Units of work keep no session state (no SET, LISTEN or
    session locks), so the default reset's extra round trip buys nothing; only an
    unfinished transaction (impossible after `async with conn.transaction()`) is undone."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    """An asyncpg pool reached from Trio; one bridge crossing per unit of work."""

    # min_size 0: connections are still reused while in use (and kept idle for
    # asyncpg's max_inactive_connection_lifetime), but while the server is down the pool
    # has no floor to restore, so it adds no reconnect loop and no log lines of its own.
    def __init__(self, dsn: str, *, min_size: int = 0, max_size: int = 10, command_timeout: float = 60.0) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self.listener = Listener(dsn)

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        """Create the pool and check that the server answers (raises if it does not).
        Needs a running trio-asyncio loop. Cancellation: nothing is kept open."""
        pool = await aio_as_trio(asyncpg.create_pool)(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            command_timeout=self._command_timeout,
            reset=_reset,
        )
        try:
            await aio_as_trio(units.fetch_one)(pool, queries.PING)
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the listener and the pool. Shielded: runs to the end even when cancelled."""
        with trio.CancelScope(shield=True):
            await self.listener.close()
            if self._pool is not None:
                pool, self._pool = self._pool, None
                with trio.move_on_after(10) as scope:
                    await aio_as_trio(pool.close)()
                if scope.cancelled_caught:
                    pool.terminate()

    async def call(self, unit: Callable[..., Any], *args: Any) -> Any:
        """Run one asyncio unit of work with the pool as its first argument."""
        if self._pool is None:
            from ..errors import NotConnected

            raise NotConnected("the database pool is not open")
        pool = self._pool
        try:
            return await aio_as_trio(unit)(pool, *args)
        except asyncpg.InternalClientError:
            # The connection went back to the pool corrupt: have every idle connection
            # replaced on its next acquire (cheap; they reconnect lazily).
            with trio.CancelScope(shield=True):
                await aio_as_trio(pool.expire_connections)()
            raise

    # -- schema --------------------------------------------------------------------

    async def migrate(self, target: int | None = None) -> list[migrations.Migration]:
        return await self.call(migrations.migrate, target)

    async def applied_migrations(self) -> list[int]:
        return await self.call(migrations.applied_versions)

    # -- jobs ----------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: datetime, connection: Any = None) -> list[asyncpg.Record]:
        """Insert jobs and their edges in one transaction (in the caller's, on `connection`)."""
        if connection is not None:
            return await aio_as_trio(units.insert_jobs)(None, jobs, now, connection)
        return await self.call(units.insert_jobs, jobs, now, None)

    async def claim(
        self, worker_id: uuid.UUID, queues: Sequence[str] | None, limit: int, now: datetime
    ) -> tuple[list[asyncpg.Record], datetime | None]:
        """Claim up to `limit` due jobs for `worker_id` (FOR UPDATE SKIP LOCKED, one statement).

        Returns the claimed rows and, when none was due, when the next scheduled job
        falls due. Shield this call: see the module docstring.
        """
        return await self.call(units.claim, worker_id, queues, limit, now)

    async def finish(self, outcomes: Sequence[Outcome], now: datetime) -> FinishReport:
        """Write outcomes (fenced), spawn children, settle dependents: one transaction."""
        return await self.call(units.finish, outcomes, now)

    async def heartbeat(
        self, worker_id: uuid.UUID, now: datetime, expires: datetime, state: str
    ) -> list[uuid.UUID] | None:
        """Renew a worker's lease: None if its row is gone (taken for dead), else the ids
        of its running jobs that an operator asked to cancel."""
        return await self.call(units.heartbeat, worker_id, now, expires, state)

    async def release_unknown_claims(
        self, worker_id: uuid.UUID, known: Sequence[uuid.UUID], now: datetime
    ) -> list[asyncpg.Record]:
        """Release rows running under `worker_id` except `known` (claims whose result was
        lost in transit); their attempt is refunded."""
        return await self.call(units.release_unknown_claims, worker_id, known, now)

    async def fetch_results(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        return await self.call(units.fetch_results, ids)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """One read-only statement (a unit of its own)."""
        return await self.call(units.fetch_one, sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """One read-only statement (a unit of its own)."""
        return await self.call(units.fetch_all, sql, *args)


@asynccontextmanager
async def transaction(connection: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """Hold a transaction on your own asyncpg connection from Trio code.

    ``async with transaction(conn): ... await task.enqueue(..., _connection=conn)``: the
    job commits or rolls back with your own writes. Commit and rollback are shielded, so
    a Trio cancellation inside the block rolls back completely and leaves the connection
    idle (``async with aio_as_trio(conn.transaction())`` would leave it in an aborted
    transaction: its ROLLBACK is cancelled too). Nested use makes a savepoint.
    """
    tx = connection.transaction()
    await aio_as_trio(tx.start)()
    try:
        yield connection
    except BaseException:
        with trio.CancelScope(shield=True):
            await aio_as_trio(tx.rollback)()
        raise
    with trio.CancelScope(shield=True):
        await aio_as_trio(tx.commit)()


Callback = Callable[[str | None], None]


class Listener:
    """One dedicated LISTEN connection, fanning notifications out to Trio callbacks.

    asyncpg delivers notifications from its protocol callbacks, which trio-asyncio runs
    on the Trio thread, so subscribers are plain synchronous callables (they set events).
    No background task is needed: loops that depend on notifications call `ensure()`
    each round, which reconnects after a loss. Subscribers receive ``None`` when the
    connection is lost, meaning "you may have missed something: poll".

    Only channels that have had a subscriber are listened to (a worker never receives a
    dashboard's notifications): subscribe first, then `ensure()`.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._lock = trio.Lock()
        self._subscribers: dict[str, list[Callback]] = defaultdict(list)
        self._listening: set[str] = set()  # channels LISTENed on the current connection
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> bool:
        """Connect (or reconnect) if needed, and LISTEN on every subscribed channel. True
        when a new connection was made, so the caller should poll for what it may have
        missed. Raises the connection error if the server cannot be reached.
        Cancellation: a half-made connection is closed."""
        if self.connected and self._listening.issuperset(self._subscribers):
            return False
        async with self._lock:
            fresh = False
            if not self.connected:
                conn = await aio_as_trio(asyncpg.connect)(self.dsn)
                conn.add_termination_listener(self._on_lost)
                if self._conn is not None:
                    self.reconnects += 1
                self._conn, self._listening, fresh = conn, set(), True
            conn = self._conn
            assert conn is not None
            try:
                for channel in sorted(set(self._subscribers) - self._listening):
                    await aio_as_trio(conn.add_listener)(channel, self._on_notify)
                    self._listening.add(channel)
            except BaseException:
                if fresh:
                    self._conn = None
                    conn.terminate()
                raise
            return fresh

    async def close(self) -> None:
        """Close the connection. Shielded."""
        with trio.CancelScope(shield=True):
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                conn.remove_termination_listener(self._on_lost)
                with trio.move_on_after(5) as scope:
                    await aio_as_trio(conn.close)()
                if scope.cancelled_caught:
                    conn.terminate()

    @contextmanager
    def subscribe(self, channel: str, callback: Callback) -> Iterator[None]:
        """Call `callback(payload)` for each notification on `channel` while inside."""
        self._subscribers[channel].append(callback)
        try:
            yield
        finally:
            self._subscribers[channel].remove(callback)

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for callback in list(self._subscribers[channel]):
            callback(payload)

    def _on_lost(self, _conn: object) -> None:
        log.warning("LISTEN connection lost; polling until it is back")
        for callbacks in self._subscribers.values():
            for callback in list(callbacks):
                callback(None)
