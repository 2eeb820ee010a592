"""Exceptions raised by Fairchild's public API."""

from __future__ import annotations

__all__ = [
    "FairchildError",
    "TaskNotFound",
    "InvalidArguments",
    "NotSerializable",
    "NotConnected",
    "FutureNotReady",
    "JobNotFound",
    "InvalidJobState",
]


class FairchildError(Exception):
    """Base class of every error Fairchild raises on purpose."""


class TaskNotFound(FairchildError, LookupError):
    """No task is registered under the given dotted name."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown task {name!r}: no @task is registered under that name "
            "(import the module that defines it, e.g. `--import myapp.tasks`)"
        )
        self.name = name


class InvalidArguments(FairchildError, TypeError):
    """The arguments do not fit the task's signature, or an option is out of range."""


class NotSerializable(InvalidArguments):
    """An argument (or result) cannot be stored as JSON. `path` names where it sits."""

    def __init__(self, path: str, value: object, what: str = "argument") -> None:
        super().__init__(
            f"{what} {path} is not JSON-serialisable: {type(value).__qualname__} "
            "(use str, int, float, bool, None, list or dict)"
        )
        self.path = path


class NotConnected(FairchildError, RuntimeError):
    """A database operation was attempted with no open `Fairchild` client."""


class FutureNotReady(FairchildError, RuntimeError):
    """A `Future` was awaited or read inside the job that spawned it."""


class JobNotFound(FairchildError, LookupError):
    """No job has the given id."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class InvalidJobState(FairchildError, ValueError):
    """An operator action does not apply to the job's current state."""
