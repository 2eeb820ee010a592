"""Security scenarios 10-12 of reliability.md: auth coverage, read-only and access
resolver, CSRF, XSS/CSP, injection via filters, redaction."""

from __future__ import annotations

import hmac
import json
import random
import re
import uuid
from typing import Any

import httpx
import pytest
import trio

import web_tasks
from fairchild.web import AuditEvent

from webutil import checksum, client, start_web, web  # noqa: F401 - fixtures

TOKEN = "s3cret-token-42"
JSON = {"Content-Type": "application/json"}


def concrete(rule: str, job_id: str) -> str:
    return (rule.replace("<job_id>", job_id).replace("<workflow_id>", job_id)
            .replace("<name>", "default").replace("<path:filename>", "app.css"))


def all_routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods):
            out.append((method, rule.rule))
    return out


# -- scenario 10: auth coverage --------------------------------------------------------------


async def test_every_route_but_healthz_needs_credentials(start_web: Any, fairchild: Any, monkeypatch: Any) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    job = await web_tasks.send_email.enqueue(to="a", subject="b")
    web = await start_web(token=TOKEN)
    routes = all_routes(web.app)
    assert len(routes) > 40
    async with web.client() as c:
        for method, rule in routes:
            path = concrete(rule, str(job.id))
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                            {"Cookie": "fairchild_session=forged"}):
                resp = await c.request(method, path, headers={**JSON, **headers}, content=b"{}" if method == "POST" else None)
                if rule == "/healthz":
                    assert resp.status_code == 200, (method, path)
                else:
                    assert resp.status_code == 401, (method, path, headers, resp.status_code)
        # near misses of /healthz are not exempt
        for path in ("/healthz/", "/healthz.json", "/HEALTHZ", "/healthz/../api/stats"):
            assert (await c.get(path)).status_code == 401, path
        # with the token every route answers something other than 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for method, rule in routes:
            if rule == "/api/events":
                continue  # a stream; covered elsewhere
            resp = await c.request(method, concrete(rule, str(job.id)), headers={**JSON, **auth},
                                   content=b"{}" if method == "POST" else None)
            assert resp.status_code != 401, (method, rule)
    assert calls, "credentials must be compared with hmac.compare_digest"
    # the API's 401 is JSON with a challenge; a page's 401 is the login form
    async with web.client() as c:
        api = await c.get("/api/stats")
        assert api.json() == {"error": "authentication required"} and "Bearer" in api.headers["www-authenticate"]
        page = await c.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and 'name="token"' in page.text


async def test_browser_login_sets_a_strict_httponly_cookie(start_web: Any) -> None:
    web = await start_web(token=TOKEN)
    origin = {"Origin": web.url, "Sec-Fetch-Site": "same-origin"}
    async with web.client() as c:
        bad = await c.post("/login", data={"token": "nope", "next": "/jobs"}, headers=origin)
        assert bad.status_code == 401 and "Wrong token" in bad.text and "set-cookie" not in bad.headers
        cross = await c.post("/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        good = await c.post("/login", data={"token": TOKEN, "next": "//evil.example/x"}, headers=origin)
        assert good.status_code == 303 and good.headers["location"] == "/"  # no open redirect
        cookie = good.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        assert (await c.get("/")).status_code == 200
        assert (await c.get("/api/stats")).status_code == 200
        logout = await c.post("/logout", data={}, headers=origin)
        assert logout.status_code == 403  # no CSRF token
        page = await c.get("/")
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)[1]  # type: ignore[index]
        logout = await c.post("/logout", data={"csrf_token": csrf}, headers=origin)
        assert logout.status_code == 303
        c.cookies.clear()
        assert (await c.get("/api/stats")).status_code == 401


# -- scenario 11: read-only, per-action resolver, audit ------------------------------------------------


async def seed(fairchild: Any) -> dict[str, str]:
    waiting = await web_tasks.send_email.enqueue_in(hours=1, to="a", subject="b")
    dead = await web_tasks.send_email.enqueue_in(hours=1, to="c", subject="d")
    await fairchild.cancel_job(dead)
    await fairchild.pause_queue("paused")
    return {"waiting": str(waiting.id), "dead": str(dead.id)}


def mutations(ids: dict[str, str]) -> list[tuple[str, str, Any]]:
    """Every mutating API request, each one valid (it would succeed if allowed)."""
    return [
        ("enqueue", "/api/jobs", {"task": "web_tasks.send_email", "args": {"to": "x", "subject": "y"}}),
        ("cancel", f"/api/jobs/{ids['waiting']}/cancel", {}),
        ("retry", f"/api/jobs/{ids['dead']}/retry", {}),
        ("cancel", "/api/jobs/cancel", {"ids": [ids["waiting"]]}),
        ("retry", "/api/jobs/retry", {"ids": [ids["dead"]]}),
        ("pause", "/api/queues/default/pause", {}),
        ("resume", "/api/queues/paused/resume", {}),
    ]


async def test_read_only_refuses_every_mutation_and_changes_nothing(start_web: Any, fairchild: Any) -> None:
    ids = await seed(fairchild)
    web = await start_web(read_only=True)
    before = await checksum(fairchild)
    posted = {path for _, path, _ in mutations(ids)}
    api_posts = {concrete(r.rule, "X") for r in web.app.url_map.iter_rules()
                 if "POST" in r.methods and r.rule.startswith("/api/")}
    assert len(api_posts) == len({re.sub(r"[0-9a-f-]{36}", "X", p) for p in posted})  # all covered
    async with web.client() as c:
        for _, path, body in mutations(ids):
            resp = await c.post(path, json=body)
            assert resp.status_code == 403 and "read-only" in resp.json()["error"], path
        for page in ("/", f"/jobs/{ids['waiting']}", f"/jobs/{ids['dead']}"):
            assert "data-action" not in (await c.get(page)).text  # no action buttons in HTML
    assert await checksum(fairchild) == before


async def test_access_resolver_and_audit_events(start_web: Any, fairchild: Any) -> None:
    ids = await seed(fairchild)
    events: list[AuditEvent] = []
    asked: list[tuple[str, str, list[str]]] = []

    def resolver(action: str, principal: Any, targets: list[str]) -> bool:
        asked.append((action, principal.user, targets))
        return action in {"cancel", "pause"}

    web = await start_web(token=TOKEN, access=resolver, audit=events.append)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with web.client(headers=auth) as c:
        outcomes = {}
        for action, path, body in mutations(ids):
            outcomes[path] = (action, (await c.post(path, json=body)).status_code)
        assert all((code == 200) == (action in {"cancel", "pause"}) for action, code in outcomes.values()), outcomes
        too_many = await c.post("/api/jobs/cancel", json={"ids": [str(uuid.uuid4()) for _ in range(1001)]})
        assert too_many.status_code == 400 and "1000" in too_many.json()["error"]
    cancel_events = [e for e in events if e.action == "cancel"]
    pause_events = [e for e in events if e.action == "pause"]
    # the single cancel succeeded (one event); the bulk cancel found it already cancelled (no event)
    assert [(e.user, e.ids) for e in cancel_events] == [("token", [ids["waiting"]])]
    assert [(e.user, e.ids) for e in pause_events] == [("token", ["default"])]
    assert len(events) == 2
    assert ("enqueue", "token", []) in asked and ("retry", "token", [ids["dead"]]) in asked


# -- scenario 12: CSRF, XSS, injection --------------------------------------------------------------------


async def test_csrf_defences_with_a_browser_session(start_web: Any, fairchild: Any) -> None:
    ids = await seed(fairchild)
    web = await start_web(token=TOKEN)
    async with web.client() as c:
        login = await c.post("/login", data={"token": TOKEN}, headers={"Origin": web.url})
        assert login.status_code == 303
        page = await c.get("/")
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)[1]  # type: ignore[index]
        target = f"/api/jobs/{ids['waiting']}/cancel"
        good = {"Origin": web.url, "Sec-Fetch-Site": "same-origin", "X-CSRF-Token": csrf, **JSON}
        before = await checksum(fairchild)
        refused = [
            {**good, "Sec-Fetch-Site": "cross-site"},
            {**good, "Sec-Fetch-Site": "same-site"},
            {**good, "Origin": "https://evil.example"},
            {**good, "Origin": "null"},
            {**good, "Content-Type": "application/x-www-form-urlencoded"},
            {**good, "Content-Type": "multipart/form-data; boundary=x"},
            {**good, "Content-Type": "text/plain"},
            {k: v for k, v in good.items() if k != "X-CSRF-Token"},
            {**good, "X-CSRF-Token": "0" * 64},
        ]
        for headers in refused:
            resp = await c.post(target, content=b"{}", headers=headers)
            assert resp.status_code == 403, headers
        assert await checksum(fairchild) == before
        resp = await c.post(target, content=b"{}", headers=good)
        assert resp.status_code == 200 and resp.json()["state"] == "cancelled"


async def test_csrf_and_dns_rebinding_without_a_token(client: httpx.AsyncClient, web: Any, fairchild: Any) -> None:
    ids = await seed(fairchild)
    page = await client.get("/")
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)[1]  # type: ignore[index]
    target = "/api/queues/default/pause"
    before = await checksum(fairchild)
    # a browser (Origin / Sec-Fetch-*) must echo the CSRF token even on an open server
    assert (await client.post(target, json={}, headers={"Origin": web.url})).status_code == 403
    assert (await client.post(target, json={}, headers={"Sec-Fetch-Site": "cross-site"})).status_code == 403
    # a rebinding attacker's page arrives with a foreign Host: refused outright
    rebound = await client.post(target, json={}, headers={"Host": "evil.example:8080", "Origin": "http://evil.example:8080"})
    assert rebound.status_code == 421
    assert (await client.get("/api/stats", headers={"Host": "evil.example"})).status_code == 421
    assert await checksum(fairchild) == before
    ok = await client.post(target, json={}, headers={"Origin": web.url, "X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert ids


HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>\"'&"


async def test_user_data_is_escaped_and_csp_forbids_inline_script(client: httpx.AsyncClient, fairchild: Any, sql: Any) -> None:
    job = await web_tasks.send_email.enqueue(to=HOSTILE, subject=HOSTILE, _queue="q<script>")
    error = {"attempt": 1, "kind": "error", "type": "<script>T</script>", "error": HOSTILE,
             "traceback": "Traceback\n" + HOSTILE, "at": "2030-01-01T00:00:00+00:00"}
    await sql("UPDATE fairchild_jobs SET errors = $2::jsonb, result = $3::jsonb WHERE id = $1",
              job.id, json.dumps([error]), json.dumps({"html": HOSTILE}))
    pages = ["/", "/jobs", f"/jobs/{job.id}", "/jobs?queue=q%3Cscript%3E", f"/workflows/{job.id}", "/workflows"]
    for path in pages:
        resp = await client.get(path)
        assert resp.status_code == 200, path
        html = resp.text
        assert "<script>alert" not in html and "<img src=x" not in html and "<script>T" not in html, path
        # no inline script, no event-handler attributes anywhere
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, (path, tag)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), path
        csp = resp.headers["content-security-policy"]
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert script_src.split() == ["script-src", "'self'"]
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"]
    detail = (await client.get(f"/jobs/{job.id}")).text
    assert "&lt;script&gt;alert(" in detail and "&lt;img src=x onerror=alert(1)&gt;" in detail
    api = (await client.get(f"/api/jobs/{job.id}")).json()
    assert api["args"]["to"] == HOSTILE  # JSON carries the data as data
    assert (await client.get(f"/api/jobs/{job.id}")).headers["content-type"] == "application/json"


def fuzz_strings(n: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    atoms = ["'", '"', ";", "--", "/*", "*/", "\\", "%", "_", "OR 1=1", "' OR '1'='1", "); DROP TABLE fairchild_jobs;--",
             "\x00", "\x1b", "\n", "é", "☃", "𝔘", "\u202e", "\ufeff", "\ud800", "{}", "[]", "::uuid", "$1", "NULL",
             "available", "completed,", ",", " ", "%00", "%27", "a" * 300, "\u0085", "<script>"]
    out = []
    for _ in range(n):
        k = rng.randint(1, 5)
        out.append("".join(rng.choice(atoms) if rng.random() < 0.7 else chr(rng.randint(32, 0x2FFF)) for _ in range(k)))
    return out


async def test_fuzzed_filters_never_cause_500s(client: httpx.AsyncClient, fairchild: Any, caplog: Any) -> None:
    await web_tasks.send_email.enqueue(to="a", subject="b")
    strings = fuzz_strings(1000)
    statuses: dict[int, int] = {}
    targets = ["/api/jobs?state={s}", "/api/jobs?queue={s}", "/api/jobs?task={s}&limit={s}", "/api/workflows?state={s}",
               "/api/jobs?cursor={s}", "/jobs?queue={s}&state={s}", "/api/jobs/{s}", "/api/workflows/{s}"]
    send, recv = trio.open_memory_channel[tuple[int, str]](0)

    async def worker() -> None:
        async for i, s in recv:
            from urllib.parse import quote

            q = quote(s.encode("utf-8", "surrogatepass"), safe="")
            resp = await client.get(targets[i % len(targets)].format(s=q))
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            assert resp.status_code < 500, (s, resp.status_code, resp.text)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(worker)
        async with send:
            for i, s in enumerate(strings):
                await send.send((i, s))
    assert sum(statuses.values()) == 1000 and not any(code >= 500 for code in statuses)
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == []  # no SQL error and no unhandled exception was logged
    assert (await client.get("/api/stats")).json()["available"] == 1  # the table is intact


async def test_redaction_hook_applies_to_html_and_json(start_web: Any, fairchild: Any) -> None:
    job = await web_tasks.send_email.enqueue(to="alice@secret.example", subject="password=hunter2")

    def redact(job: dict[str, Any]) -> dict[str, Any]:
        return {**job, "args": {k: "[redacted]" for k in job["args"]}}

    web = await start_web(redact=redact)
    async with web.client() as c:
        api = (await c.get(f"/api/jobs/{job.id}")).json()
        assert api["args"] == {"to": "[redacted]", "subject": "[redacted]"}
        html = (await c.get(f"/jobs/{job.id}")).text
        assert "hunter2" not in html and "secret.example" not in html and "[redacted]" in html
        cancelled = (await c.post(f"/api/jobs/{job.id}/cancel", json={})).json()
        assert "hunter2" not in json.dumps(cancelled)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "[::1]"])
def test_loopback_names(host: str) -> None:
    from fairchild.web import check_bind

    check_bind(host, None)  # fine without a token
