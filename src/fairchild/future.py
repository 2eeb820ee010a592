"""`Future`: the promise of another job's recorded result."""

from __future__ import annotations

import uuid
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, NoReturn

from .errors import FutureNotReady

__all__ = ["Future"]

_NOT_READY = (
    "the result of job {id} ({task}) does not exist yet: its job is only written when the "
    "job that spawned it finishes. Pass the Future to another task instead; Fairchild "
    "resolves it to the recorded value before that task runs"
)


@dataclass(frozen=True, slots=True)
class Future:
    """Returned when a task is called inside a running job.

    A Future stands for the `Record` value of a child job that will be spawned when the
    current job finishes. Passing it (also inside lists and dicts) to another task makes
    that task wait for the child and receive its value; returning it from a task makes
    the task complete with the child's value. It cannot be read or awaited where it was
    made: the value does not exist yet.
    """

    job_id: uuid.UUID
    task: str

    def _not_ready(self) -> NoReturn:
        raise FutureNotReady(_NOT_READY.format(id=self.job_id, task=self.task))

    def __await__(self) -> Generator[Any, None, NoReturn]:
        self._not_ready()
        yield  # pragma: no cover - unreachable, makes this a generator

    @property
    def value(self) -> NoReturn:
        """Always raises `FutureNotReady`: see the class docstring."""
        self._not_ready()

    def __bool__(self) -> NoReturn:
        self._not_ready()
