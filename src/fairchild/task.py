"""`@task`: turn a function into a Fairchild task, and the registry of tasks by name."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

import trio

from .codec import encode_args
from .context import current_client, current_execution
from .errors import InvalidArguments, TaskNotFound
from .future import Future
from .record import Record

if TYPE_CHECKING:
    from .job import Job

__all__ = ["Task", "task", "get_task", "registered_tasks", "NewJob"]

P = ParamSpec("P")
R = TypeVar("R")

_REGISTRY: dict[str, Task[Any, Any]] = {}


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to insert. Built by `Task.prepare`; never by users."""

    id: uuid.UUID
    task: str
    queue: str
    args_json: str
    priority: int
    max_attempts: int
    timeout: float | None
    tags: list[str]
    scheduled_at: datetime | None  # None: now
    upstreams: list[uuid.UUID] = field(default_factory=list)
    parent_id: uuid.UUID | None = None
    workflow_id: uuid.UUID | None = None  # None: this job's own id, or its first upstream's


def _module_name(fn: Callable[..., Any]) -> str:
    """The importable module name of `fn`, even when its module runs as ``__main__``."""
    module = fn.__module__
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if path:
        rel = os.path.relpath(os.path.abspath(path), os.getcwd())
        if not rel.startswith(".."):
            return rel.removesuffix(".py").replace(os.sep, ".")
    return module


def check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise InvalidArguments(f"priority must be an integer from 0 to 9, got {priority!r}")
    return priority


def check_queue(queue: object) -> str:
    """A queue name: 1-128 characters, not blank, none of them a control character or a
    lone surrogate (PostgreSQL text cannot hold NUL or invalid UTF-8)."""
    if not isinstance(queue, str):
        raise InvalidArguments(f"queue must be a string, got {type(queue).__qualname__}")
    if not queue.strip():
        raise InvalidArguments("queue name must not be blank")
    if len(queue) > 128:
        raise InvalidArguments(f"queue name is too long ({len(queue)} characters, at most 128)")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in queue):
        raise InvalidArguments(f"queue name must not contain control characters, got {queue!r}")
    return queue


def check_when(when: object) -> datetime:
    if not isinstance(when, datetime):
        raise InvalidArguments(f"scheduled_at must be a datetime, got {type(when).__qualname__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidArguments(
            f"scheduled_at must be timezone-aware (e.g. tzinfo=timezone.utc), got {when.isoformat()}"
        )
    return when


class Task(Generic[P, R]):
    """A function registered as a Fairchild task. Create one with `@task`.

    * ``await t.enqueue(**kwargs)`` inserts a job and returns its `Job`.
    * Called inside a running job, ``t(**kwargs)`` spawns a child job and returns a
      `Future`; called anywhere else it runs the function directly.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 3,
        priority: int = 5,
        tags: Sequence[str] = (),
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name or f"{_module_name(fn)}.{fn.__qualname__}"
        self.queue = check_queue(queue)
        self.priority = check_priority(priority)
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArguments(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        self.tags = [str(t) for t in tags]
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise InvalidArguments(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout) if timeout is not None else None
        self.signature = inspect.signature(fn)
        if any(p.kind is p.VAR_POSITIONAL for p in self.signature.parameters.values()):
            raise InvalidArguments(f"task {self.name}: *args is not supported; tasks take keyword arguments")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue!r}>"

    # -- validation ------------------------------------------------------------------

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Check arguments against the signature; return them as one keyword dict.

        Raises `InvalidArguments` naming the missing or unexpected argument.
        """
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}: {exc}") from None
        out: dict[str, Any] = {}
        for pname, value in bound.arguments.items():
            if self.signature.parameters[pname].kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            else:
                out[pname] = value
        return out

    def prepare(
        self,
        kwargs: Mapping[str, Any],
        *,
        job_id: uuid.UUID | None = None,
        queue: str | None = None,
        priority: int | None = None,
        scheduled_at: datetime | None = None,
        parent_id: uuid.UUID | None = None,
        workflow_id: uuid.UUID | None = None,
        args: Sequence[Any] = (),
    ) -> NewJob:
        """Validate arguments and options into a `NewJob` (nothing is written)."""
        bound = self.bind(args, kwargs)
        try:
            args_json, upstreams = encode_args(bound)
        except InvalidArguments as exc:
            # Prefix the task name, keeping the exception's type (and NotSerializable.path).
            exc.args = (f"{self.name}: {exc}",)
            raise exc.with_traceback(None) from None
        return NewJob(
            id=job_id or uuid.uuid4(),
            task=self.name,
            queue=check_queue(queue) if queue is not None else self.queue,
            args_json=args_json,
            priority=check_priority(priority) if priority is not None else self.priority,
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            tags=self.tags,
            scheduled_at=check_when(scheduled_at) if scheduled_at is not None else None,
            upstreams=upstreams,
            parent_id=parent_id,
            workflow_id=workflow_id,
        )

    # -- calling -----------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Spawn a child job (inside a running job) or run the function (anywhere else).

        Inside a job the return value is a `Future` (typed as the function's result for
        convenience of passing it on); options ``_queue`` and ``_priority`` apply.
        """
        ctx = current_execution()
        options: dict[str, Any] = {k: kwargs.pop(k) for k in ("_queue", "_priority") if k in kwargs}
        if ctx is None:
            # Run directly. A `Record` among the arguments stands where a worker would have
            # had a Future (another task called directly returned it): pass its value, as
            # a worker resolves a Future, so workflows also run directly (`fairchild run`).
            call = functools.partial(self.fn, *_record_values(args), **_record_values(kwargs))
            if self.is_async and _in_trio_worker_thread():
                # An async task called from sync code in a Trio worker thread (a sync task
                # run by `fairchild run`): run it on the Trio loop instead of returning an
                # un-awaited coroutine.
                return trio.from_thread.run(call)  # type: ignore[arg-type]
            return call()
        parent = ctx.job
        child = ctx.spawn(
            lambda child_id: self.prepare(
                kwargs,
                args=args,
                job_id=child_id,
                queue=options.get("_queue"),
                priority=options.get("_priority"),
                parent_id=parent.id,
                workflow_id=parent.workflow_id,
            )
        )
        return Future(child.id, self.name)  # type: ignore[return-value]

    # -- enqueueing --------------------------------------------------------------------

    async def enqueue(
        self,
        *,
        _queue: str | None = None,
        _priority: int | None = None,
        _scheduled_at: datetime | None = None,
        _connection: Any = None,
        **kwargs: Any,
    ) -> Job:
        """Insert one job and return it.

        ``_connection``: an asyncpg connection inside the caller's transaction; the job then
        commits or rolls back with it. Raises `InvalidArguments` (nothing inserted) when
        an argument is missing, unexpected or not JSON-serialisable.

        Cancellation: the insert's transaction rolls back; with ``_connection`` the
        caller's transaction decides.
        """
        new = self.prepare(kwargs, queue=_queue, priority=_priority, scheduled_at=_scheduled_at)
        client = current_client()
        (job,) = await client.insert_jobs([new], connection=_connection)
        return job

    async def enqueue_in(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        **kwargs: Any,
    ) -> Job:
        """Enqueue to run after the given delay (the delay's keywords add up)."""
        delay = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        if delay < timedelta(0):
            raise InvalidArguments(f"enqueue_in needs a delay >= 0, got {delay}")
        return await self.enqueue(_scheduled_at=datetime.now(timezone.utc) + delay, **kwargs)

    async def enqueue_at(self, when: datetime, /, **kwargs: Any) -> Job:
        """Enqueue to run at `when` (a timezone-aware datetime)."""
        return await self.enqueue(_scheduled_at=check_when(when), **kwargs)

    async def enqueue_many(
        self,
        kwargs_list: Iterable[Mapping[str, Any]],
        *,
        _queue: str | None = None,
        _priority: int | None = None,
        _scheduled_at: datetime | None = None,
        _connection: Any = None,
    ) -> list[Job]:
        """Insert many jobs in one statement (one round trip) and return them in order.

        Every item is validated first: if any is invalid, `InvalidArguments` names its
        index and nothing is inserted.
        """
        batch: list[NewJob] = []
        for index, kwargs in enumerate(kwargs_list):
            try:
                batch.append(
                    self.prepare(kwargs, queue=_queue, priority=_priority, scheduled_at=_scheduled_at)
                )
            except InvalidArguments as exc:
                exc.args = (f"item {index}: {exc}",)
                raise exc.with_traceback(None) from None
        if not batch:
            return []
        return await current_client().insert_jobs(batch, connection=_connection)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    queue: str = ...,
    max_attempts: int = ...,
    priority: int = ...,
    tags: Sequence[str] = ...,
    timeout: float | None = ...,
    name: str | None = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    queue: str = "default",
    max_attempts: int = 3,
    priority: int = 5,
    tags: Sequence[str] = (),
    timeout: float | None = None,
    name: str | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Register a sync or async function as a task, by its dotted name ``module.function``.

    ``queue`` (default "default"), ``max_attempts`` (3), ``priority`` (0-9, lower runs
    first; 5), ``tags``, ``timeout`` (seconds per attempt; None: no limit), ``name``
    (override the dotted name). Usable as ``@task`` or ``@task(...)``.
    """

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        t = Task(f, name=name, queue=queue, max_attempts=max_attempts, priority=priority, tags=tags, timeout=timeout)
        _REGISTRY[t.name] = t
        return t

    return wrap(fn) if fn is not None else wrap


def get_task(name: str) -> Task[Any, Any]:
    """The task registered under `name`; `TaskNotFound` if none is."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TaskNotFound(name) from None


def registered_tasks() -> dict[str, Task[Any, Any]]:
    """A copy of the registry: dotted name -> Task."""
    return dict(_REGISTRY)


def _in_trio_worker_thread() -> bool:
    """True in a thread started by `trio.to_thread.run_sync` (not on the Trio thread)."""
    if trio.lowlevel.in_trio_run():
        return False
    try:
        trio.from_thread.check_cancelled()
    except RuntimeError:
        return False
    return True


def _record_values(value: Any) -> Any:
    """`value` with every `Record` (in lists, tuples and dicts, at any depth) replaced by
    its value."""
    if isinstance(value, Record):
        return value.value
    if isinstance(value, list):
        return [_record_values(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_record_values(v) for v in value)
    if isinstance(value, dict):
        return {k: _record_values(v) for k, v in value.items()}
    return value

