"""`Record`: the value a task persists as its result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """Wrap a task's return value to store it (as JSON) in the job's `result`.

    Downstream jobs that were given this job's `Future` receive `value`. A task that
    returns anything else stores no result (its Future resolves to ``None``).
    """

    value: Any
