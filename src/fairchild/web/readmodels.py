"""Read models of the dashboard and the JSON API: one read statement each.

Every function takes the connected `Fairchild` client and returns plain JSON-ready
values (uuids and datetimes as ISO strings). The SQL lives in `fairchild.db.queries`
("dashboard read models"); filters are bind parameters, never spliced into SQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..client import Fairchild
from ..db import queries as q
from ..errors import JobNotFound
from ..job import Job, JobState, workflow_state

__all__ = [
    "STATES",
    "JobPage",
    "stats",
    "list_jobs",
    "get_job",
    "queues",
    "throughput",
    "list_workflows",
    "get_workflow",
    "workers",
    "health",
]

STATES: tuple[str, ...] = tuple(s.value for s in JobState)
WORKFLOW_NODE_LIMIT = 5000  # jobs drawn per workflow; larger ones are truncated (and say so)
CHILDREN_LIMIT = 500


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _text(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """The list shape of a job (no args, result or errors: they can be large)."""
    return {
        "id": str(row["id"]),
        "task": row["task"],
        "queue": row["queue"],
        "state": row["state"],
        "priority": row["priority"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "tags": list(row["tags"]),
        "parent_id": _text(row["parent_id"]),
        "workflow_id": _text(row["workflow_id"]),
        "worker_id": _text(row["worker_id"]),
        "cancel_reason": row["cancel_reason"],
        "error_count": row["error_count"],
        "scheduled_at": _iso(row["scheduled_at"]),
        "inserted_at": _iso(row["inserted_at"]),
        "attempted_at": _iso(row["attempted_at"]),
        "finished_at": _iso(row["finished_at"]),
    }


async def stats(fc: Fairchild) -> dict[str, int]:
    """Job counts by state (every state present, zeros included)."""
    rows = await fc.database.fetch(q.DASH_STATS)
    counts = dict.fromkeys(STATES, 0)
    for r in rows:
        counts[r["state"]] = int(r["n"])
    return counts


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of `list_jobs`: the jobs and the cursor of the next page (None: last page)."""

    jobs: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(inserted_at: datetime, job_id: uuid.UUID) -> str:
    return f"{inserted_at.isoformat()}_{job_id}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for a cursor this module did not make."""
    at, sep, ident = cursor.rpartition("_")
    if not sep:
        raise ValueError(cursor)
    when = datetime.fromisoformat(at)
    if when.tzinfo is None:
        raise ValueError(cursor)
    return when, uuid.UUID(ident)


async def list_jobs(
    fc: Fairchild,
    *,
    states: Sequence[str] | None = None,
    queue: str | None = None,
    task: str | None = None,
    workflow_id: uuid.UUID | None = None,
    cursor: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    """Jobs, newest first, filtered; page with `offset` or with `cursor` (keyset)."""
    rows = await fc.database.fetch(
        q.DASH_LIST_JOBS,
        list(states) if states else None,
        queue,
        task,
        workflow_id,
        cursor[0] if cursor else None,
        cursor[1] if cursor else None,
        limit + 1,
        offset,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["inserted_at"], rows[-1]["id"]) if more and rows else None
    return JobPage([summary(r) for r in rows], nxt)


async def get_job(fc: Fairchild, job_id: uuid.UUID) -> dict[str, Any]:
    """A job in full (`Job.to_dict`), plus its children, upstream and downstream jobs."""
    row = await fc.database.fetchrow(q.GET_JOB, job_id)
    if row is None:
        raise JobNotFound(job_id)
    out = Job.from_row(row).to_dict()
    children = await fc.database.fetch(q.DASH_CHILDREN, job_id, CHILDREN_LIMIT)
    out["children"] = [summary(r) for r in children]
    out["children_total"] = children[0]["total"] if children else 0
    edges = await fc.database.fetch(q.DASH_JOB_EDGES, job_id)
    out["upstream"] = [
        {"id": str(e["upstream_id"]), "task": e["upstream_task"], "state": e["upstream_state"]}
        for e in edges if e["downstream_id"] == job_id
    ]
    out["downstream"] = [
        {"id": str(e["downstream_id"]), "task": e["downstream_task"], "state": e["downstream_state"]}
        for e in edges if e["upstream_id"] == job_id
    ]
    return out


async def queues(fc: Fairchild) -> list[dict[str, Any]]:
    """Each queue: paused?, depth (jobs due or waiting to be due), running, counts by state."""
    out = []
    for r in await fc.database.fetch(q.DASH_QUEUES):
        counts = dict.fromkeys(STATES, 0)
        counts.update({k: int(v) for k, v in _json(r["counts"]).items()})
        out.append(
            {
                "name": r["name"],
                "paused": r["paused"],
                "depth": counts["available"] + counts["scheduled"] + counts["retryable"],
                "available": counts["available"],
                "running": counts["running"],
                "counts": counts,
                "paused_changed_at": _iso(r["updated_at"]),
            }
        )
    return out


async def throughput(fc: Fairchild, now: datetime, minutes: int = 60) -> dict[str, Any]:
    """Jobs completed and failed (discarded) per minute over the last `minutes` minutes."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    rows = await fc.database.fetch(q.DASH_THROUGHPUT, start, end)
    index = {start + timedelta(minutes=i): i for i in range(minutes)}
    completed = [0] * minutes
    failed = [0] * minutes
    for r in rows:
        i = index.get(r["minute"])
        if i is None:
            continue
        (completed if r["state"] == "completed" else failed)[i] += r["n"]
    return {
        "minutes": [_iso(m) for m in index],
        "completed": completed,
        "failed": failed,
    }


async def list_workflows(
    fc: Fairchild, *, states: Sequence[str] | None = None, limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Workflow roots, newest first, each with its job counts by state."""
    rows = await fc.database.fetch(q.DASH_WORKFLOWS, list(states) if states else None, limit, offset)
    out = []
    for r in rows:
        counts = dict.fromkeys(STATES, 0)
        counts.update({k: int(v) for k, v in _json(r["counts"]).items()})
        item = summary(r)
        item.update(total=r["total"], counts=counts, workflow_state=workflow_state(counts))
        out.append(item)
    return out


async def get_workflow(fc: Fairchild, workflow_id: uuid.UUID) -> dict[str, Any]:
    """A workflow: its root, every job (up to a limit) and the futures edges between them.

    Parent -> child structure is in each job's ``parent_id``. `JobNotFound` when no job
    belongs to a workflow with this id.
    """
    jobs = await fc.database.fetch(q.DASH_WORKFLOW_JOBS, workflow_id, WORKFLOW_NODE_LIMIT)
    if not jobs:
        raise JobNotFound(workflow_id)
    total = len(jobs)
    if total >= WORKFLOW_NODE_LIMIT:
        row = await fc.database.fetchrow(q.DASH_WORKFLOW_COUNT, workflow_id)
        total = row["n"] if row else total
    ids = {r["id"] for r in jobs}
    edges = await fc.database.fetch(q.DASH_WORKFLOW_EDGES, workflow_id)
    counts = dict.fromkeys(STATES, 0)
    for r in jobs:
        counts[r["state"]] += 1
    root = next((r for r in jobs if r["id"] == workflow_id), None)
    return {
        "id": str(workflow_id),
        "root": summary(root) if root is not None else None,
        "total": total,
        "truncated": total > len(jobs),
        "counts": counts,
        "workflow_state": workflow_state(counts),
        "jobs": [summary(r) for r in jobs],
        "edges": [
            {"upstream": str(e["upstream_id"]), "downstream": str(e["downstream_id"])}
            for e in edges
            if e["upstream_id"] in ids and e["downstream_id"] in ids
        ],
    }


async def workers(fc: Fairchild) -> list[dict[str, Any]]:
    """Registered worker processes, with the number of jobs each runs now."""
    return [
        {
            "id": str(r["id"]),
            "hostname": r["hostname"],
            "pid": r["pid"],
            "queues": list(r["queues"]) if r["queues"] is not None else None,
            "concurrency": r["concurrency"],
            "state": r["state"],
            "running": r["running"],
            "started_at": _iso(r["started_at"]),
            "last_heartbeat_at": _iso(r["last_heartbeat_at"]),
            "lease_expires_at": _iso(r["lease_expires_at"]),
        }
        for r in await fc.database.fetch(q.DASH_WORKERS)
    ]


async def health(fc: Fairchild) -> bool:
    """True when the database answers."""
    row = await fc.database.fetchrow(q.DASH_HEALTH)
    return row is not None
