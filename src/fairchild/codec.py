"""JSON encoding of task arguments and results, with Futures as graph edges.

A `Future` or `Job` inside arguments (at any depth of lists and dicts) is stored as the
marker ``{"$fairchild_future": "<job id>"}`` and becomes an edge upstream -> this job.
Before the job runs, each marker is replaced by the upstream job's recorded result.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import InvalidArguments, NotSerializable
from .future import Future
from .job import Job

__all__ = ["encode_args", "encode_result", "resolve", "upstream_ids", "FUTURE_KEY"]

FUTURE_KEY = "$fairchild_future"


def _walk(value: Any, path: str, found: list[uuid.UUID], what: str, allow_futures: bool) -> Any:
    if isinstance(value, str):
        if "\x00" in value and what == "argument":  # jsonb cannot store NUL (\u0000)
            raise NotSerializable(f"{path} (contains a NUL character, which PostgreSQL cannot store)", value, what)
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotSerializable(path, value, what)
        return value
    if isinstance(value, (Future, Job)) and allow_futures:
        job_id = value.job_id if isinstance(value, Future) else value.id
        if job_id not in found:
            found.append(job_id)
        return {FUTURE_KEY: str(job_id)}
    if isinstance(value, (list, tuple)):
        return [_walk(v, f"{path}[{i}]", found, what, allow_futures) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if allow_futures and len(value) == 1 and FUTURE_KEY in value:
            # Stored as is, it would read as a Future marker and be "resolved" at run time.
            raise InvalidArguments(f"{what} {path}: a dict whose only key is {FUTURE_KEY!r} is reserved for Futures")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotSerializable(f"{path} key {key!r}", key, what)
            if "\x00" in key and what == "argument":
                raise NotSerializable(f"{path} key {key!r} (contains a NUL character)", key, what)
            out[key] = _walk(item, f"{path}[{key!r}]", found, what, allow_futures)
        return out
    raise NotSerializable(path, value, what)


def encode_args(args: Mapping[str, Any]) -> tuple[str, list[uuid.UUID]]:
    """Return (JSON text, upstream job ids in first-use order) for a job's arguments.

    Raises `NotSerializable` naming the argument path (``'values'[2]``) of the first value
    that JSON cannot hold: objects, sets, bytes, NaN and infinities included.
    """
    found: list[uuid.UUID] = []
    encoded = {
        name: _walk(value, repr(name), found, "argument", True)
        for name, value in args.items()
    }
    return json.dumps(encoded, separators=(",", ":")), found


def encode_result(value: Any, max_bytes: int) -> str:
    """JSON text of a `Record` value; `NotSerializable` if it cannot be stored or is too big."""
    text = json.dumps(_walk(value, "value", [], "result", False), separators=(",", ":"))
    if len(text) > max_bytes:
        raise NotSerializable(f"value ({len(text)} bytes, limit {max_bytes})", value, "result")
    return text


def upstream_ids(value: Any) -> list[uuid.UUID]:
    """Every upstream id referenced by markers in stored arguments, in first-use order."""
    found: list[uuid.UUID] = []

    def visit(v: Any) -> None:
        if isinstance(v, dict):
            if len(v) == 1 and FUTURE_KEY in v:
                job_id = uuid.UUID(v[FUTURE_KEY])
                if job_id not in found:
                    found.append(job_id)
                return
            for item in v.values():
                visit(item)
        elif isinstance(v, list):
            for item in v:
                visit(item)

    visit(value)
    return found


def resolve(value: Any, results: Mapping[uuid.UUID, Any]) -> Any:
    """Replace every marker in stored arguments by its upstream's recorded result."""
    if isinstance(value, dict):
        if len(value) == 1 and FUTURE_KEY in value:
            return results[uuid.UUID(value[FUTURE_KEY])]
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    return value
