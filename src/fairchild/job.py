"""`Job` (a row of `fairchild_jobs`, as Python sees it) and `JobState`."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Job", "JobState", "workflow_state"]


class JobState(enum.StrEnum):
    """Where a job is in its life. See the README's "Job states" section."""

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    RETRYABLE = "retryable"
    BLOCKED = "blocked"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


def _json(value: Any) -> Any:
    """asyncpg returns jsonb as text unless a codec is set (the caller's own connection)."""
    return json.loads(value) if isinstance(value, str) else value


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED})
CLAIMABLE_STATES = frozenset({JobState.SCHEDULED, JobState.AVAILABLE, JobState.RETRYABLE})


def workflow_state(counts: Mapping[str, int]) -> str:
    """A workflow's state from its jobs' counts by state: ``running`` while any job is
    unfinished, then ``completed`` if every job completed, else ``failed``."""
    final = {s.value for s in FINAL_STATES}
    if any(n for state, n in counts.items() if state not in final):
        return "running"
    return "failed" if counts.get("discarded") or counts.get("cancelled") else "completed"


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job. Fetch a fresh one with `Fairchild.get_job`.

    A `Job` returned by `enqueue` may be passed as an argument to another `enqueue`:
    the second job then waits for the first and receives its recorded result.
    """

    id: uuid.UUID
    task: str
    queue: str
    args: dict[str, Any]
    state: JobState
    priority: int
    attempt: int
    max_attempts: int
    scheduled_at: datetime
    inserted_at: datetime
    workflow_id: uuid.UUID
    timeout: float | None = None
    tags: list[str] = field(default_factory=list)
    result: Any = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    cancel_reason: str | None = None
    parent_id: uuid.UUID | None = None
    worker_id: uuid.UUID | None = None
    attempted_at: datetime | None = None
    finished_at: datetime | None = None
    deps_pending: int = 0
    children_pending: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build a Job from a `fairchild_jobs` row (jsonb columns as JSON text)."""
        return cls(
            id=row["id"],
            task=row["task"],
            queue=row["queue"],
            args=_json(row["args"]),
            state=JobState(row["state"]),
            priority=row["priority"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            scheduled_at=row["scheduled_at"],
            inserted_at=row["inserted_at"],
            workflow_id=row["workflow_id"],
            timeout=row["timeout"],
            tags=list(row["tags"]),
            result=_json(row["result"]),
            errors=_json(row["errors"]),
            cancel_reason=row["cancel_reason"],
            parent_id=row["parent_id"],
            worker_id=row["worker_id"],
            attempted_at=row["attempted_at"],
            finished_at=row["finished_at"],
            deps_pending=row["deps_pending"],
            children_pending=row["children_pending"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (uuids and datetimes as ISO strings), as the HTTP API shows it."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        def text(value: uuid.UUID | None) -> str | None:
            return str(value) if value is not None else None

        return {
            "id": str(self.id),
            "task": self.task,
            "queue": self.queue,
            "state": self.state.value,
            "args": self.args,
            "priority": self.priority,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "tags": self.tags,
            "result": self.result,
            "errors": self.errors,
            "cancel_reason": self.cancel_reason,
            "parent_id": text(self.parent_id),
            "workflow_id": text(self.workflow_id),
            "worker_id": text(self.worker_id),
            "deps_pending": self.deps_pending,
            "children_pending": self.children_pending,
            "scheduled_at": iso(self.scheduled_at),
            "inserted_at": iso(self.inserted_at),
            "attempted_at": iso(self.attempted_at),
            "finished_at": iso(self.finished_at),
        }
