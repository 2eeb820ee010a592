"""The Quart-Trio application: `create_app` builds it, `serve` runs it on Hypercorn.

The app lives in the caller's Trio process and trio-asyncio loop: `serve` must be called
inside the loop the `Fairchild` client uses (``async with Fairchild(...)`` opens one), so
handlers reach the database through the client's pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, current_app, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .._version import __version__
from ..client import Fairchild
from .events import EventHub
from .security import (
    LOGIN_CSS,
    SECURITY_HEADERS,
    AccessResolver,
    AuditEvent,
    Principal,
    Security,
    is_loopback,
    log_refusal,
)

__all__ = ["create_app", "serve", "check_bind", "UnsafeBind", "WebState", "web_state"]

log = logging.getLogger("fairchild.web")

Redactor = Callable[[dict[str, Any]], dict[str, Any]]


class UnsafeBind(ValueError):
    """Serving on a non-loopback address without an access token."""


def check_bind(host: str, token: str | None, insecure_no_auth: bool = False) -> None:
    """Refuse a non-loopback bind without a token (unless explicitly insecure)."""
    if not token and not insecure_no_auth and not is_loopback(host):
        raise UnsafeBind(
            f"refusing to serve on {host!r} without an access token: set --token or "
            "FAIRCHILD_UI_TOKEN, bind to localhost, or pass --insecure-no-auth"
        )


@dataclass
class WebState:
    """What the views need: the client, the security settings, the event hub."""

    fairchild: Fairchild
    security: Security
    hub: EventHub
    redact: Redactor | None
    title: str

    def redact_job(self, job: dict[str, Any]) -> dict[str, Any]:
        """Apply the redaction hook (if any) to a full job dict (args, result, errors)."""
        return self.redact(dict(job)) if self.redact is not None else job


def web_state() -> WebState:
    return current_app.extensions["fairchild"]


def json_error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps({"error": message}), status=status, content_type="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def wants_json() -> bool:
    path = request.path
    if path.startswith("/api/") or path == "/healthz":
        return True
    accept = request.headers.get("Accept", "")
    return "text/html" not in accept and "application/json" in accept


def create_app(
    fairchild: Fairchild,
    *,
    token: str | None = None,
    read_only: bool = False,
    access: AccessResolver | None = None,
    audit: Callable[[AuditEvent], None] | None = None,
    redact: Redactor | None = None,
    allowed_hosts: Collection[str] | None = None,
    title: str = "Fairchild",
) -> QuartTrio:
    """The dashboard and JSON API for a connected `Fairchild` client.

    ``token``: access token (None: no authentication; then only loopback host names are
    answered unless ``allowed_hosts`` says otherwise). ``read_only``: every mutation is
    403. ``access(action, principal, ids) -> bool``: a per-action resolver. ``audit``:
    called once per successful mutation. ``redact(job_dict) -> job_dict``: applied to
    every job shown in full, in HTML and JSON.
    """
    app = QuartTrio(__name__, static_folder="static", template_folder="templates")
    app.url_map.merge_slashes = False  # "/api/jobs//cancel" is a 404, not a redirect
    app.url_map.strict_slashes = False
    app.config.update(
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=None,
    )
    security = Security(token=token or None, read_only=read_only, access=access,
                        allowed_hosts=allowed_hosts, audit=audit)
    hub = EventHub(fairchild)
    state = WebState(fairchild, security, hub, redact, title)
    app.extensions["fairchild"] = state

    @app.before_serving
    async def _start_hub() -> None:
        app.add_background_task(hub.run)

    @app.after_serving
    async def _stop_hub() -> None:
        hub.close()

    @app.before_request
    async def _guard() -> Response | None:
        if not security.host_allowed(request.host):
            log_refusal(f"host {request.host!r} not allowed", request.path, request.remote_addr)
            return json_error("unknown host (this server only answers to its loopback name)", 421)
        # Read the whole body before answering, even to refuse: a response sent over an
        # unread body leaves Hypercorn's keep-alive connection wedged for the next request.
        await request.get_data(cache=True)
        if request.path == "/healthz":
            return None
        principal = security.authenticate(request.headers, request.cookies)
        login = request.path == "/login" and request.method in ("GET", "HEAD", "POST")
        if principal is None and not login:
            if wants_json():
                return json_error("authentication required", 401, {"WWW-Authenticate": 'Bearer realm="fairchild"'})
            from .pages import login_page

            return await login_page(status=401)
        g.principal = principal or Principal("anonymous", "none")
        form_token = None
        if request.method == "POST" and not request.path.startswith("/api/"):
            form = await request.form
            form_token = form.get("csrf_token")
        problem = security.csrf_problem(
            method=request.method,
            path=request.path,
            headers=request.headers,
            origin=f"{request.scheme}://{request.host}",
            principal=g.principal,
            form_token=form_token,
            needs_token=not login,
        )
        if problem is not None:
            log_refusal(problem, request.path, request.remote_addr)
            if wants_json():
                return json_error(problem, 403)
            return Response(problem, status=403, content_type="text/plain; charset=utf-8")
        return None

    @app.after_request
    async def _headers(resp: Response) -> Response:
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        if request.path.startswith("/static/"):
            resp.headers.setdefault("Cache-Control", "no-cache")
        else:
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if wants_json():
            message = {404: "not found", 405: "method not allowed", 413: "request body too large"}.get(
                status, exc.description or exc.name
            )
            return json_error(message, status)
        try:
            from .pages import error_page

            return await error_page(status, exc.name, exc.description or "")
        except Exception:  # noqa: BLE001 - never fail while reporting a failure
            return Response(f"{status} {exc.name}", status=status, content_type="text/plain; charset=utf-8")

    @app.errorhandler(Exception)
    async def _crash(exc: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        if wants_json():
            return json_error("internal error", 500)
        return Response("500 Internal Server Error", status=500, content_type="text/plain; charset=utf-8")

    from .api import api
    from .pages import pages

    app.register_blueprint(api)
    app.register_blueprint(pages)
    app.jinja_env.globals.update(version=__version__, login_css=LOGIN_CSS)
    return app


async def serve(
    fairchild: Fairchild,
    host: str = "localhost",
    port: int = 8080,
    *,
    token: str | None = None,
    read_only: bool = False,
    insecure_no_auth: bool = False,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    graceful_timeout: float = 2.0,
    app: QuartTrio | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    **app_options: Any,
) -> None:
    """Serve the app with Hypercorn in this Trio process until `shutdown_trigger` returns
    (or the caller cancels). Call it inside the client's trio-asyncio loop.

    ``task_status.started(binds)`` reports the bound URLs (``nursery.start(serve, ...)``;
    port 0 picks a free port). Raises `UnsafeBind` for a non-loopback host without a
    token unless ``insecure_no_auth``. Shutdown: open SSE streams are ended at once; other
    requests, and idle keep-alive connections (Hypercorn waits for those too), get
    `graceful_timeout` seconds.
    """
    check_bind(host, token, insecure_no_auth)
    if app is None:
        if insecure_no_auth and not token and not is_loopback(host) and "allowed_hosts" not in app_options:
            app_options["allowed_hosts"] = ["*"]
        app = create_app(fairchild, token=token, read_only=read_only, **app_options)
    config = Config()
    bind_host = f"[{host.strip('[]')}]" if ":" in host else host
    config.bind = [f"{bind_host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.accesslog = logging.getLogger("fairchild.web.access")
    config.errorlog = logging.getLogger("fairchild.web.error")
    config.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus'
    state: WebState = app.extensions["fairchild"]

    async def trigger() -> None:
        if shutdown_trigger is None:
            await trio.sleep_forever()
        else:
            await shutdown_trigger()
        log.info("web UI shutting down")
        state.hub.close()

    async def run(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await hypercorn_serve(app, config, shutdown_trigger=trigger, task_status=task_status)

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(run)
        for url in binds:
            log.info("Fairchild UI on %s%s", url, " (read-only)" if read_only else "")
        task_status.started(binds)
    log.info("web UI stopped")
