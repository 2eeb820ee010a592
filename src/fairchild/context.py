"""Context variables: the open client, and the job whose body is running.

Both are `contextvars`, so they follow Trio tasks and the worker threads that run sync
tasks (`trio.to_thread.run_sync` copies the context).
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import NotConnected

if TYPE_CHECKING:
    from .client import Fairchild
    from .job import Job
    from .task import NewJob

__all__ = ["ExecutionContext", "current_client", "current_execution", "use_client"]

_client: contextvars.ContextVar[Fairchild | None] = contextvars.ContextVar(
    "fairchild_client", default=None
)
_execution: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "fairchild_execution", default=None
)
# The most recently connected client that is still open: the fallback for code that runs
# outside the task that opened it (a web handler, a task started before `connect`).
_default_client: list[Fairchild] = []

_CHILD_NAMESPACE = uuid.UUID("6f1c2a5e-3b8d-4d57-9a7e-0c5b1f2e8d41")


def current_client() -> Fairchild:
    """The `Fairchild` client that task enqueues go through; `NotConnected` if none is open."""
    client = _client.get()
    if client is not None and client.is_connected:
        return client
    for candidate in reversed(_default_client):
        if candidate.is_connected:
            return candidate
    raise NotConnected(
        "no Fairchild client is connected: use `async with Fairchild(...)` "
        "(or `await fairchild.connect()`) before enqueueing"
    )


def register_default(client: Fairchild) -> None:
    _default_client.append(client)


def unregister_default(client: Fairchild) -> None:
    if client in _default_client:
        _default_client.remove(client)


@contextmanager
def use_client(client: Fairchild) -> Iterator[None]:
    token = _client.set(client)
    try:
        yield
    finally:
        _client.reset(token)


@dataclass
class ExecutionContext:
    """The job whose body is running, and the children it has spawned so far."""

    job: Job
    children: list[NewJob] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def spawn(self, build: Callable[[uuid.UUID], NewJob]) -> NewJob:
        """Record a child built by `build(child_id)` and return it.

        The child id is deterministic in (parent, attempt, call position): a retried write
        of the same completion inserts the same ids, so children are never created twice,
        while a new attempt spawns a new set.
        """
        with self._lock:
            position = len(self.children)
            child_id = uuid.uuid5(_CHILD_NAMESPACE, f"{self.job.id}:{self.job.attempt}:{position}")
            child = build(child_id)
            self.children.append(child)
            return child


def current_execution() -> ExecutionContext | None:
    """The running job's context, or None outside a worker."""
    return _execution.get()


@contextmanager
def executing(ctx: ExecutionContext) -> Iterator[None]:
    token = _execution.set(ctx)
    try:
        yield
    finally:
        _execution.reset(token)
