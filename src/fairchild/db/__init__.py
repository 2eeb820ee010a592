"""The database layer: the only package that imports asyncio or asyncpg."""

from .database import (
    CHANNEL_CANCEL,
    CHANNEL_FINAL,
    CHANNEL_INSERT,
    CHANNEL_STATE,
    ConnectionLost,
    Database,
    DatabaseError,
    FinishReport,
    Listener,
    Outcome,
    QueryCanceledError,
    transaction,
)

__all__ = [
    "CHANNEL_CANCEL",
    "CHANNEL_FINAL",
    "CHANNEL_INSERT",
    "CHANNEL_STATE",
    "ConnectionLost",
    "Database",
    "DatabaseError",
    "FinishReport",
    "Listener",
    "Outcome",
    "QueryCanceledError",
    "transaction",
]
