"""The JSON API (see `openapi.py` for its document). Errors are ``{"error": "..."}``.

Input is validated before anything is written: unknown tasks (looked up in the registry,
never imported from request text), arguments that do not fit the task (`Task.prepare`,
as in Python), malformed JSON, ids, filters and paging all answer 4xx and insert nothing.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from quart import Blueprint, Response, g, request

from ..errors import InvalidArguments, InvalidJobState, JobNotFound, TaskNotFound
from ..task import check_queue, get_task
from . import readmodels as rm
from .app import json_error, web_state
from .openapi import openapi_document
from .security import AuditEvent

__all__ = ["api", "ApiError"]

api = Blueprint("api", __name__)

MAX_LIMIT = 500
MAX_OFFSET = 1_000_000_000
MAX_FILTER = 200


class ApiError(Exception):
    """A client error: `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@api.errorhandler(ApiError)
async def _api_error(exc: ApiError) -> Response:
    return json_error(exc.message, exc.status)


def ok(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    resp = Response(json.dumps(data, default=str), status=status, content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# -- input parsing ---------------------------------------------------------------------------


def clean_text(value: str, what: str, limit: int = MAX_FILTER) -> str:
    """A filter or name as PostgreSQL can take it: no NUL/control characters, valid UTF-8."""
    if len(value) > limit:
        raise ApiError(400, f"{what} is too long (at most {limit} characters)")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ApiError(400, f"{what} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{what} is not valid UTF-8") from None
    return value


def parse_uuid(value: str, what: str = "job id") -> uuid.UUID:
    try:
        return uuid.UUID(clean_text(value, what, 64))
    except ValueError:
        raise ApiError(400, f"{what} is not a UUID: {value[:64]!r}") from None


def parse_states(args: Any) -> list[str] | None:
    raw = [p.strip() for v in args.getlist("state") for p in v.split(",") if p.strip()]
    for s in raw:
        if s not in rm.STATES:
            raise ApiError(400, f"unknown state {s[:40]!r} (one of: {', '.join(rm.STATES)})")
    return raw or None


def parse_int(args: Any, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_filter(args: Any, name: str) -> str | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    return clean_text(raw, name)


def _check_json(value: Any, path: str = "args") -> None:
    """PostgreSQL's jsonb cannot store NUL characters or non-finite numbers."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(422, f"{path}: text must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, f"{path}: text is not valid UTF-8") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ApiError(422, f"{path}: numbers must be finite")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_json(k, path)
            _check_json(v, f"{path}.{k[:40]}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]")


async def json_body(optional: bool = False) -> dict[str, Any]:
    data = await request.get_data(as_text=False)
    if not data.strip():
        if optional:
            return {}
        raise ApiError(400, "request body must be a JSON object")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def authorize(action: str, targets: list[str]) -> None:
    st = web_state()
    if not st.security.allows(action, g.principal, targets):
        why = "the server is read-only" if st.security.read_only else f"{action} is not allowed"
        raise ApiError(403, why)


def audit(action: str, ids: list[str]) -> None:
    principal = g.principal
    web_state().security.record(
        AuditEvent(principal.user, action, ids, principal.via, request.remote_addr)
    )


# -- routes ------------------------------------------------------------------------------------


@api.get("/healthz")
async def healthz() -> Response:
    """Liveness and database reachability (no authentication)."""
    try:
        healthy = await rm.health(web_state().fairchild)
    except Exception:  # noqa: BLE001 - any database failure means unhealthy
        healthy = False
    return ok({"status": "ok" if healthy else "unavailable"}, 200 if healthy else 503)


@api.get("/api/openapi.json")
async def openapi() -> Response:
    return ok(openapi_document())


@api.get("/api/stats")
async def stats() -> Response:
    return ok(await rm.stats(web_state().fairchild))


@api.get("/api/throughput")
async def throughput() -> Response:
    minutes = parse_int(request.args, "minutes", 60, 1, 24 * 60)
    fc = web_state().fairchild
    return ok(await rm.throughput(fc, fc.clock(), minutes))


@api.get("/api/jobs")
async def list_jobs() -> Response:
    args = request.args
    states = parse_states(args)
    queue = parse_filter(args, "queue")
    task = parse_filter(args, "task")
    workflow = parse_filter(args, "workflow_id")
    workflow_id = parse_uuid(workflow, "workflow_id") if workflow else None
    limit = parse_int(args, "limit", 50, 1, MAX_LIMIT)
    offset = parse_int(args, "offset", 0, 0, MAX_OFFSET)
    raw_cursor = parse_filter(args, "cursor")
    cursor = None
    if raw_cursor:
        if offset:
            raise ApiError(400, "give offset or cursor, not both")
        try:
            cursor = rm.decode_cursor(raw_cursor)
        except ValueError:
            raise ApiError(400, "cursor is not one this API returned") from None
    page = await rm.list_jobs(
        web_state().fairchild, states=states, queue=queue, task=task, workflow_id=workflow_id,
        cursor=cursor, limit=limit, offset=offset,
    )
    return ok({"jobs": page.jobs, "limit": limit, "offset": offset, "next_cursor": page.next_cursor})


@api.post("/api/jobs")
async def enqueue() -> Response:
    authorize("enqueue", [])
    body = await json_body()
    unknown = set(body) - {"task", "args", "priority", "queue", "scheduled_at"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(k[:40] for k in unknown))}")
    name = body.get("task")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "task must be the dotted name of a registered task")
    args = body.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ApiError(400, "args must be a JSON object of argument names to values")
    _check_json(args)
    priority = body.get("priority")
    queue = body.get("queue")
    if queue is not None:
        if not isinstance(queue, str):
            raise ApiError(422, "queue must be a string")
        queue = clean_text(queue, "queue", 128)
    when_raw = body.get("scheduled_at")
    when: datetime | None = None
    if when_raw is not None:
        if not isinstance(when_raw, str):
            raise ApiError(422, "scheduled_at must be an ISO 8601 string")
        try:
            when = datetime.fromisoformat(when_raw.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ApiError(422, f"scheduled_at is not an ISO 8601 time: {when_raw[:60]!r}") from None
        if when.tzinfo is None:
            raise ApiError(422, "scheduled_at needs a time zone (e.g. 2030-01-15T10:00:00Z)")
    try:
        t = get_task(clean_text(name, "task"))
    except TaskNotFound:
        raise ApiError(422, f"unknown task {name[:200]!r}: no task is registered under that name") from None
    try:
        new = t.prepare(args, queue=queue, priority=priority, scheduled_at=when)
    except InvalidArguments as exc:
        raise ApiError(422, str(exc)) from None
    (job,) = await web_state().fairchild.insert_jobs([new])
    audit("enqueue", [str(job.id)])
    out = job.to_dict()
    return ok(
        {k: out[k] for k in ("id", "task", "queue", "state", "scheduled_at")},
        201,
        {"Location": f"/api/jobs/{job.id}"},
    )


@api.get("/api/jobs/<job_id>")
async def get_job(job_id: str) -> Response:
    ident = parse_uuid(job_id)
    st = web_state()
    try:
        return ok(st.redact_job(await rm.get_job(st.fairchild, ident)))
    except JobNotFound:
        raise ApiError(404, f"no job with id {ident}") from None


async def _operate(action: str, job_id: str) -> Response:
    ident = parse_uuid(job_id)
    authorize(action, [str(ident)])
    body = await json_body(optional=True)
    st = web_state()
    try:
        if action == "cancel":
            reason = body.get("reason", "cancelled from the web UI")
            if not isinstance(reason, str) or not reason.strip():
                raise ApiError(422, "reason must be a non-empty string")
            job = await st.fairchild.cancel_job(ident, clean_text(reason, "reason", 500))
        else:
            job = await st.fairchild.retry_job(ident)
    except JobNotFound:
        raise ApiError(404, f"no job with id {ident}") from None
    except InvalidJobState as exc:
        raise ApiError(409, str(exc)) from None
    audit(action, [str(ident)])
    return ok(st.redact_job(job.to_dict()))


@api.post("/api/jobs/<job_id>/cancel")
async def cancel(job_id: str) -> Response:
    return await _operate("cancel", job_id)


@api.post("/api/jobs/<job_id>/retry")
async def retry(job_id: str) -> Response:
    return await _operate("retry", job_id)


MAX_BULK = 1000


async def _bulk(action: str) -> Response:
    body = await json_body()
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, "ids must be a non-empty list of job ids")
    if len(ids) > MAX_BULK:
        raise ApiError(400, f"at most {MAX_BULK} ids per request, got {len(ids)}")
    if not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "ids must be strings")
    idents = list(dict.fromkeys(parse_uuid(i) for i in ids))
    authorize(action, [str(i) for i in idents])
    fc = web_state().fairchild
    results: list[dict[str, Any]] = []
    done: list[str] = []
    for ident in idents:
        try:
            if action == "cancel":
                job = await fc.cancel_job(ident, "cancelled from the web UI")
            else:
                job = await fc.retry_job(ident)
        except JobNotFound:
            results.append({"id": str(ident), "ok": False, "error": "no such job"})
        except InvalidJobState as exc:
            results.append({"id": str(ident), "ok": False, "error": str(exc)})
        else:
            results.append({"id": str(ident), "ok": True, "state": job.state.value})
            done.append(str(ident))
    if done:
        audit(action, done)
    return ok({"results": results})


@api.post("/api/jobs/cancel")
async def bulk_cancel() -> Response:
    """Cancel up to 1,000 jobs: ``{"ids": [...]}``; a result per id."""
    return await _bulk("cancel")


@api.post("/api/jobs/retry")
async def bulk_retry() -> Response:
    """Retry up to 1,000 jobs: ``{"ids": [...]}``; a result per id."""
    return await _bulk("retry")


@api.get("/api/queues")
async def queues() -> Response:
    return ok({"queues": await rm.queues(web_state().fairchild)})


async def _pause(name: str, paused: bool) -> Response:
    try:
        name = check_queue(name)
    except InvalidArguments as exc:
        raise ApiError(400, str(exc)) from None
    action = "pause" if paused else "resume"
    authorize(action, [name])
    await json_body(optional=True)
    fc = web_state().fairchild
    if paused:
        await fc.pause_queue(name)
    else:
        await fc.resume_queue(name)
    audit(action, [name])
    return ok({"name": name, "paused": paused})


@api.post("/api/queues/<name>/pause")
async def pause(name: str) -> Response:
    return await _pause(name, True)


@api.post("/api/queues/<name>/resume")
async def resume(name: str) -> Response:
    return await _pause(name, False)


@api.get("/api/workflows")
async def workflows() -> Response:
    args = request.args
    states = parse_states(args)
    limit = parse_int(args, "limit", 50, 1, MAX_LIMIT)
    offset = parse_int(args, "offset", 0, 0, MAX_OFFSET)
    items = await rm.list_workflows(web_state().fairchild, states=states, limit=limit, offset=offset)
    return ok({"workflows": items, "limit": limit, "offset": offset})


@api.get("/api/workflows/<workflow_id>")
async def workflow(workflow_id: str) -> Response:
    ident = parse_uuid(workflow_id, "workflow id")
    try:
        return ok(await rm.get_workflow(web_state().fairchild, ident))
    except JobNotFound:
        raise ApiError(404, f"no workflow with id {ident}") from None


@api.get("/api/workers")
async def workers() -> Response:
    return ok({"workers": await rm.workers(web_state().fairchild)})


@api.get("/api/events")
async def events() -> Response:
    """Server-Sent Events: one ``change`` event per database notification."""
    st = web_state()
    if request.method == "HEAD":
        return Response(b"", status=200, content_type="text/event-stream")
    resp = Response(
        st.hub.stream(),
        status=200,
        content_type="text/event-stream",
        # Connection: close lets a graceful shutdown end the stream without waiting for the
        # idle keep-alive connection to time out.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "close"},
    )
    resp.timeout = None  # else Quart's RESPONSE_TIMEOUT cuts the stream
    return resp
