"""The dashboard's HTML pages (server-rendered; small vanilla JS adds live updates).

Every value from the database goes through Jinja's autoescaping; pages carry no inline
script or event-handler attributes (the CSP forbids them).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, abort, g, redirect, render_template, request
from quart.typing import ResponseReturnValue

from ..errors import JobNotFound
from . import readmodels as rm
from .api import ApiError, parse_filter, parse_int, parse_states
from .app import web_state
from .security import SESSION_COOKIE, Principal

__all__ = ["pages", "login_page", "timeline"]

pages = Blueprint("pages", __name__)

FINAL = ("completed", "discarded", "cancelled")


def _context(page: str, **extra: Any) -> dict[str, Any]:
    st = web_state()
    principal: Principal = getattr(g, "principal", Principal("anonymous", "none"))
    return {
        "page": page,
        "title": st.title,
        "csrf_token": st.security.csrf_token(principal),
        "read_only": st.security.read_only,
        "can": {a: st.security.allows(a, principal, []) for a in ("cancel", "retry", "pause", "resume")},
        "session": principal.via == "cookie",
        "states": rm.STATES,
        **extra,
    }


def pretty(value: Any) -> str:
    """JSON for display (escaped by the template, never marked safe)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def timeline(job: dict[str, Any]) -> list[dict[str, Any]]:
    """Events of a job's life, oldest first, from its timestamps and its errors."""
    events: list[dict[str, Any]] = [
        {"at": job["inserted_at"], "state": "inserted", "text": f"enqueued on queue {job['queue']}"}
    ]
    if job["scheduled_at"] and job["inserted_at"] and job["scheduled_at"] > job["inserted_at"]:
        events.append({"at": job["scheduled_at"], "state": "scheduled", "text": "due to run"})
    for err in job.get("errors") or []:
        kind = err.get("kind") or "error"
        text = f"attempt {err.get('attempt')}: {kind}"
        if err.get("type"):
            text += f" ({err['type']})"
        if err.get("error"):
            text += f": {str(err['error'])[:300]}"
        events.append({"at": err.get("at"), "state": "failed", "text": text})
    if job["attempted_at"]:
        events.append({"at": job["attempted_at"], "state": "running",
                       "text": f"attempt {job['attempt']} of {job['max_attempts']} started"})
    if job["finished_at"]:
        text = job["state"] + (f": {job['cancel_reason']}" if job.get("cancel_reason") else "")
        events.append({"at": job["finished_at"], "state": job["state"], "text": text})
    elif job["state"] not in ("scheduled", "available") or job["attempt"]:
        events.append({"at": None, "state": job["state"], "text": f"now {job['state']}"})
    events.sort(key=lambda e: (e["at"] is None, e["at"] or ""))
    return events


def _uuid_or_404(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        abort(404)
        raise  # unreachable


async def login_page(status: int = 200, error: str | None = None) -> Response:
    nxt = request.args.get("next") or (request.full_path.rstrip("?") if request.method == "GET" else "/")
    if request.path == "/login":
        nxt = request.args.get("next") or "/"
    html = await render_template("login.html", error=error, next=_safe_next(nxt), title=web_state().title)
    return Response(html, status=status, content_type="text/html; charset=utf-8")


async def error_page(status: int, name: str, message: str) -> Response:
    """An HTML error page in the dashboard's frame."""
    if status == 404:
        message = "There is nothing here: the job or workflow may have been pruned, or the address is wrong."
    html = await render_template("error.html", **_context("error", status=status, name=name, message=message))
    return Response(html, status=status, content_type="text/html; charset=utf-8")


def _safe_next(target: str) -> str:
    """Only local paths (no scheme, no host, no backslashes)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


@pages.route("/login", methods=["GET", "POST"])
async def login() -> ResponseReturnValue:
    st = web_state()
    if not st.security.token:
        return redirect("/")
    signed_in = st.security.authenticate(request.headers, request.cookies) is not None
    if request.method in ("GET", "HEAD"):
        if signed_in:
            return redirect(_safe_next(request.args.get("next", "/")))
        return await login_page(status=401)
    form = await request.form
    if signed_in and "token" not in form:
        return redirect(_safe_next(form.get("next", "/")), 303)
    if not st.security.check_token(form.get("token", "")):
        return await login_page(status=401, error="Wrong token.")
    resp = redirect(_safe_next(form.get("next", "/")), 303)
    resp.set_cookie(
        SESSION_COOKIE, st.security.session_value or "", httponly=True, samesite="Strict",
        secure=request.scheme == "https", path="/",
    )
    return resp


@pages.post("/logout")
async def logout() -> ResponseReturnValue:
    resp = redirect("/login", 303)
    resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return resp


@pages.get("/")
async def overview() -> str:
    fc = web_state().fairchild
    counts = await rm.stats(fc)
    recent = await rm.list_jobs(fc, limit=15)
    return await render_template(
        "overview.html",
        **_context("overview", counts=counts, total=sum(counts.values()), queues=await rm.queues(fc),
                   workers=await rm.workers(fc), recent=recent.jobs),
    )


@pages.get("/jobs")
async def jobs() -> Response | str:
    fc = web_state().fairchild
    args = request.args
    try:
        states = parse_states(args)
        queue = parse_filter(args, "queue")
        task = parse_filter(args, "task")
        limit = parse_int(args, "limit", 50, 1, 500)
        offset = parse_int(args, "offset", 0, 0, 1_000_000_000)
    except ApiError as exc:
        return Response(exc.message, status=400, content_type="text/plain; charset=utf-8")
    page = await rm.list_jobs(fc, states=states, queue=queue, task=task, limit=limit, offset=offset)
    base = {k: v for k, v in (("state", ",".join(states or [])), ("queue", queue), ("task", task)) if v}
    older = urlencode({**base, "offset": offset + limit}) if page.next_cursor else None
    newer = urlencode({**base, "offset": max(0, offset - limit)}) if offset else None
    return await render_template(
        "jobs.html",
        **_context("jobs", jobs=page.jobs, state=",".join(states or []), queue=queue or "",
                   task=task or "", older=older, newer=newer, offset=offset),
    )


@pages.get("/jobs/<job_id>")
async def job(job_id: str) -> str:
    st = web_state()
    ident = _uuid_or_404(job_id)
    try:
        data = st.redact_job(await rm.get_job(st.fairchild, ident))
    except JobNotFound:
        abort(404)
    return await render_template(
        "job.html",
        **_context("job", job=data, timeline=timeline(data), pretty=pretty,
                   final=data["state"] in FINAL,
                   retryable=data["state"] in ("discarded", "cancelled")),
    )


@pages.get("/workflows")
async def workflows() -> str:
    items = await rm.list_workflows(web_state().fairchild, limit=100)
    return await render_template("workflows.html", **_context("workflows", workflows=items))


@pages.get("/workflows/<workflow_id>")
async def workflow(workflow_id: str) -> str:
    st = web_state()
    ident = _uuid_or_404(workflow_id)
    try:
        data = await rm.get_workflow(st.fairchild, ident)
    except JobNotFound:
        abort(404)
    return await render_template("workflow.html", **_context("workflow", wf=data))


@pages.app_template_filter("when")
def _when(value: str | None) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS`` in UTC (the footer says so)."""
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


@pages.app_template_filter("short")
def _short(value: str | None) -> str:
    return (value or "")[:8]
