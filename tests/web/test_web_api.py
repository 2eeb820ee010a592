"""The JSON API over real HTTP (Hypercorn on 127.0.0.1:0, httpx), route by route."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import trio

import web_tasks
from webutil import client, start_web, web  # noqa: F401 - fixtures
from fairchild.web.readmodels import STATES

EMAIL = "web_tasks.send_email"


async def count_jobs(sql: Any) -> int:
    return (await sql("SELECT count(*) AS n FROM fairchild_jobs"))[0]["n"]


def assert_error(resp: httpx.Response, status: int, needle: str = "") -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert needle.lower() in body["error"].lower(), body


# -- enqueue --------------------------------------------------------------------------------


async def test_enqueue_matches_the_spec_example(client: httpx.AsyncClient, fairchild: Any) -> None:
    resp = await client.post("/api/jobs", json={
        "task": EMAIL, "args": {"to": "user@example.com", "subject": "Hello"},
        "priority": 1, "scheduled_at": "2024-01-15T10:00:00Z",
    })
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert list(body) == ["id", "task", "queue", "state", "scheduled_at"]
    assert body["task"] == EMAIL and body["queue"] == "default" and body["state"] == "available"
    assert body["scheduled_at"] == "2024-01-15T10:00:00+00:00"
    assert resp.headers["location"] == f"/api/jobs/{body['id']}"
    job = await fairchild.get_job(body["id"])
    assert job.args == {"to": "user@example.com", "subject": "Hello"} and job.priority == 1


async def test_enqueue_options_future_schedule_and_queue(client: httpx.AsyncClient, fairchild: Any) -> None:
    when = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    resp = await client.post("/api/jobs", json={
        "task": EMAIL, "args": {"to": "a", "subject": "b"}, "queue": "high", "scheduled_at": when.isoformat(),
    })
    assert resp.status_code == 201
    body = resp.json()
    assert body["state"] == "scheduled" and body["queue"] == "high"
    assert datetime.fromisoformat(body["scheduled_at"]) == when


async def test_enqueue_errors_insert_nothing(client: httpx.AsyncClient, sql: Any) -> None:
    cases: list[tuple[Any, int, str]] = [
        ({"task": "no.such.task", "args": {}}, 422, "unknown task"),
        ({"task": "os.system", "args": {"command": "true"}}, 422, "unknown task"),  # never imported
        ({"task": EMAIL, "args": {"to": "a"}}, 422, "subject"),                      # missing argument
        ({"task": EMAIL, "args": {"to": "a", "subject": "b", "cc": "x"}}, 422, "cc"),  # unexpected
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "priority": 12}, 422, "priority"),
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "priority": "1"}, 422, "priority"),
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "queue": ""}, 422, "queue"),
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "queue": 5}, 422, "queue"),
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "scheduled_at": "soon"}, 422, "scheduled_at"),
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "scheduled_at": "2030-01-01T00:00:00"}, 422, "zone"),
        ({"task": EMAIL, "args": {"to": "a\u0000", "subject": "b"}}, 422, "NUL"),
        ({"task": EMAIL, "args": ["a", "b"]}, 400, "args"),
        ({"task": EMAIL, "args": {"to": "a", "subject": "b"}, "bogus": 1}, 400, "unknown field"),
        ({"args": {}}, 400, "task"),
        ({"task": 7}, 400, "task"),
        ([1, 2], 400, "object"),
    ]
    for body, status, needle in cases:
        assert_error(await client.post("/api/jobs", json=body), status, needle)
    headers = {"Content-Type": "application/json"}
    assert_error(await client.post("/api/jobs", content=b"{not json", headers=headers), 400, "JSON")
    assert_error(await client.post("/api/jobs", content=b"", headers=headers), 400, "JSON object")
    assert_error(await client.post("/api/jobs", content=b"\xff\xfe", headers=headers), 400, "JSON")
    assert_error(await client.post("/api/jobs", content=b"NaN", headers=headers), 400)
    assert await count_jobs(sql) == 0


# -- reading ----------------------------------------------------------------------------------


async def test_stats_counts_every_state(client: httpx.AsyncClient, fairchild: Any) -> None:
    assert (await client.get("/api/stats")).json() == dict.fromkeys(STATES, 0)
    await web_tasks.send_email.enqueue(to="a", subject="b")
    await web_tasks.send_email.enqueue_in(hours=1, to="a", subject="b")
    body = (await client.get("/api/stats")).json()
    assert body["available"] == 1 and body["scheduled"] == 1 and sum(body.values()) == 2


async def test_list_jobs_filters_and_paging(client: httpx.AsyncClient, fairchild: Any) -> None:
    for i in range(7):
        await web_tasks.send_email.enqueue(to=str(i), subject="s", _queue="mail" if i % 2 else "default")
    await web_tasks.send_email.enqueue_in(hours=1, to="later", subject="s")

    everything = (await client.get("/api/jobs")).json()
    assert len(everything["jobs"]) == 8 and everything["next_cursor"] is None
    inserted = [j["inserted_at"] for j in everything["jobs"]]
    assert inserted == sorted(inserted, reverse=True)
    assert "args" not in everything["jobs"][0]  # list items are summaries

    mail = (await client.get("/api/jobs", params={"queue": "mail"})).json()["jobs"]
    assert len(mail) == 3 and {j["queue"] for j in mail} == {"mail"}
    sched = (await client.get("/api/jobs", params={"state": "scheduled"})).json()["jobs"]
    assert len(sched) == 1 and sched[0]["state"] == "scheduled"
    both = (await client.get("/api/jobs", params={"state": "scheduled,available"})).json()["jobs"]
    assert len(both) == 8
    repeated = (await client.get("/api/jobs?state=scheduled&state=available")).json()["jobs"]
    assert len(repeated) == 8
    assert (await client.get("/api/jobs", params={"task": EMAIL, "limit": 2})).json()["jobs"][0]["task"] == EMAIL

    # offset paging
    page1 = (await client.get("/api/jobs", params={"limit": 3})).json()
    page2 = (await client.get("/api/jobs", params={"limit": 3, "offset": 3})).json()
    assert [j["id"] for j in page1["jobs"] + page2["jobs"]] == [j["id"] for j in everything["jobs"][:6]]
    # cursor paging walks everything exactly once
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/jobs", params=params)).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [j["id"] for j in everything["jobs"]]


async def test_list_jobs_rejects_bad_filters(client: httpx.AsyncClient) -> None:
    for params, needle in [
        ({"state": "nope"}, "unknown state"),
        ({"state": "available,nope"}, "unknown state"),
        ({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"), ({"offset": "1" * 40}, "offset"),
        ({"cursor": "garbage"}, "cursor"), ({"cursor": "x", "offset": "3"}, "cursor"),
        ({"workflow_id": "not-a-uuid"}, "uuid"),
        ({"queue": "a\x00b"}, "control"), ({"queue": "q" * 500}, "too long"),
    ]:
        assert_error(await client.get("/api/jobs", params=params), 400, needle)


async def test_get_job_in_full(client: httpx.AsyncClient, fairchild: Any, start_worker: Any) -> None:
    failed = await web_tasks.explode.enqueue(message="kaput")
    await start_worker(concurrency=2)
    await fairchild.wait(failed, timeout=20)
    body = (await client.get(f"/api/jobs/{failed.id}")).json()
    assert body["state"] == "discarded" and body["args"] == {"message": "kaput"}
    (err,) = body["errors"]
    assert err["type"].endswith("ValueError") and "kaput" in err["error"] and "Traceback" in err["traceback"]
    assert body["children"] == [] and body["upstream"] == [] and body["downstream"] == []

    flow = await web_tasks.fan_out.enqueue(items=[1, 2, 3])
    await fairchild.wait(flow, timeout=20)
    root = (await client.get(f"/api/jobs/{flow.id}")).json()
    assert root["state"] == "completed" and root["children_total"] == 4 and len(root["children"]) == 4
    summer = next(c for c in root["children"] if c["task"] == "web_tasks.sum_results")
    detail = (await client.get(f"/api/jobs/{summer['id']}")).json()
    assert detail["result"] == 12 and detail["parent_id"] == str(flow.id)
    assert len(detail["upstream"]) == 3 and {u["task"] for u in detail["upstream"]} == {"web_tasks.multiply"}


async def test_get_job_errors(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/api/jobs/{uuid.uuid4()}"), 404, "no job")
    assert_error(await client.get("/api/jobs/not-a-uuid"), 400, "uuid")
    assert_error(await client.get("/api/jobs/%00"), 400)
    assert_error(await client.get("/api/nowhere"), 404)
    assert_error(await client.request("DELETE", "/api/jobs", headers={"Content-Type": "application/json"}), 405)


async def test_queues_workers_and_throughput(client: httpx.AsyncClient, fairchild: Any, start_worker: Any) -> None:
    assert (await client.get("/api/queues")).json() == {"queues": []}
    job = await web_tasks.send_email.enqueue(to="a", subject="b")
    await web_tasks.send_email.enqueue(to="a", subject="b", _queue="slow")
    await fairchild.pause_queue("slow")
    await start_worker(concurrency=2, queues=["default"])
    await fairchild.wait(job, timeout=20)
    queues = {q["name"]: q for q in (await client.get("/api/queues")).json()["queues"]}
    assert queues["slow"]["paused"] is True and queues["slow"]["depth"] == 1
    assert queues["default"]["paused"] is False and queues["default"]["counts"]["completed"] == 1
    (worker,) = (await client.get("/api/workers")).json()["workers"]
    assert worker["queues"] == ["default"] and worker["concurrency"] == 2 and worker["state"] == "running"
    series = (await client.get("/api/throughput")).json()
    assert len(series["minutes"]) == 60 and sum(series["completed"]) == 1 and sum(series["failed"]) == 0
    assert_error(await client.get("/api/throughput", params={"minutes": "0"}), 400, "minutes")


async def test_workflows(client: httpx.AsyncClient, fairchild: Any, start_worker: Any) -> None:
    await web_tasks.send_email.enqueue(to="single", subject="not a workflow")
    flow = await web_tasks.fan_out.enqueue(items=[1, 2, 3, 4])
    await start_worker(concurrency=4)
    await fairchild.wait(flow, timeout=20)
    listed = (await client.get("/api/workflows")).json()["workflows"]
    assert [w["id"] for w in listed] == [str(flow.id)]
    assert listed[0]["total"] == 6 and listed[0]["counts"]["completed"] == 6
    assert listed[0]["workflow_state"] == "completed"
    (same,) = await fairchild.list_workflows()  # the Python API agrees
    assert same["workflow_id"] == flow.id and same["total"] == 6 and same["state"] == "completed"
    assert (await client.get("/api/workflows", params={"state": "discarded"})).json()["workflows"] == []
    wf = (await client.get(f"/api/workflows/{flow.id}")).json()
    assert wf["total"] == 6 and len(wf["jobs"]) == 6 and wf["truncated"] is False
    assert wf["root"]["id"] == str(flow.id) and wf["workflow_state"] == "completed"
    summer = next(j for j in wf["jobs"] if j["task"] == "web_tasks.sum_results")
    assert len(wf["edges"]) == 4 and {e["downstream"] for e in wf["edges"]} == {summer["id"]}
    assert sum(1 for j in wf["jobs"] if j["parent_id"] == str(flow.id)) == 5
    assert_error(await client.get(f"/api/workflows/{uuid.uuid4()}"), 404, "no workflow")
    assert_error(await client.get("/api/workflows/123"), 400, "uuid")
    assert_error(await client.get("/api/workflows", params={"state": "nope"}), 400, "unknown state")


# -- operator actions -----------------------------------------------------------------------------


async def test_cancel_and_retry(client: httpx.AsyncClient, fairchild: Any) -> None:
    job = await web_tasks.send_email.enqueue_in(hours=1, to="a", subject="b")
    resp = await client.post(f"/api/jobs/{job.id}/cancel", json={"reason": "not needed"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "cancelled" and resp.json()["cancel_reason"] == "not needed"
    assert_error(await client.post(f"/api/jobs/{job.id}/cancel", json={}), 409, "already cancelled")
    resp = await client.post(f"/api/jobs/{job.id}/retry", json={})
    assert resp.status_code == 200 and resp.json()["state"] == "available"
    assert_error(await client.post(f"/api/jobs/{job.id}/retry", json={}), 409, "available")
    # a bodyless POST with the JSON content type is fine
    resp = await client.post(f"/api/jobs/{job.id}/cancel", headers={"Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json()["cancel_reason"] == "cancelled from the web UI"
    missing = uuid.uuid4()
    assert_error(await client.post(f"/api/jobs/{missing}/cancel", json={}), 404, "no job")
    assert_error(await client.post(f"/api/jobs/{missing}/retry", json={}), 404, "no job")
    assert_error(await client.post("/api/jobs/xyz/cancel", json={}), 400, "uuid")
    assert_error(await client.post(f"/api/jobs/{job.id}/cancel", json={"reason": 5}), 422, "reason")
    assert_error(await client.post(f"/api/jobs/{job.id}/cancel", content=b"[", headers={"Content-Type": "application/json"}), 400, "JSON")


async def test_pause_and_resume(client: httpx.AsyncClient, sql: Any) -> None:
    resp = await client.post("/api/queues/mail/pause", json={})
    assert resp.status_code == 200 and resp.json() == {"name": "mail", "paused": True}
    assert (await sql("SELECT paused FROM fairchild_queues WHERE name = 'mail'"))[0]["paused"] is True
    resp = await client.post("/api/queues/mail/resume", json={})
    assert resp.json() == {"name": "mail", "paused": False}
    assert (await sql("SELECT paused FROM fairchild_queues WHERE name = 'mail'"))[0]["paused"] is False
    assert_error(await client.post("/api/queues/%20/pause", json={}), 400, "blank")
    assert_error(await client.post("/api/queues/a%00b/pause", json={}), 400, "control")
    assert_error(await client.post("/api/queues/" + "q" * 200 + "/pause", json={}), 400, "too long")


# -- misc -----------------------------------------------------------------------------------------


async def test_healthz_and_openapi(client: httpx.AsyncClient, web: Any) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    doc = (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in web.app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule == "/healthz":
            path = rule.rule.replace("<job_id>", "{id}").replace("<workflow_id>", "{id}").replace("<name>", "{name}")
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented


async def read_until(stream: trio.SocketStream, buf: bytearray, needle: bytes) -> None:
    while needle not in buf:
        chunk = await stream.receive_some()
        assert chunk, f"stream ended before {needle!r}: {bytes(buf)!r}"
        buf += chunk


async def test_server_sent_events_follow_notifications(web: Any, fairchild: Any) -> None:
    """Raw HTTP/1.1 (httpx's streaming generators are not aclosed under trio's hooks)."""
    host, port = web.url.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"GET /api/events HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buf = bytearray()
        with trio.fail_after(10):
            await read_until(stream, buf, b"event: hello")
            head = bytes(buf).split(b"\r\n\r\n", 1)[0].decode().lower()
            assert head.startswith("http/1.1 200") and "content-type: text/event-stream" in head
            await web_tasks.send_email.enqueue(to="a", subject="live")
            await read_until(stream, buf, b'"type": "insert"')
            await read_until(stream, buf, b"\n\n")
            assert b'"payload": "default"' in buf


async def test_html_pages_and_their_errors(client: httpx.AsyncClient, fairchild: Any) -> None:
    flow = await web_tasks.fan_out.enqueue(items=[1])
    for path in ("/", "/jobs", "/jobs?state=available&queue=default", f"/jobs/{flow.id}", "/workflows",
                 f"/workflows/{flow.id}"):
        resp = await client.get(path, headers={"Accept": "text/html"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html"), path
        assert "times in UTC" in resp.text
    for path in (f"/jobs/{uuid.uuid4()}", "/jobs/not-a-uuid", f"/workflows/{uuid.uuid4()}", "/nowhere"):
        resp = await client.get(path, headers={"Accept": "text/html"})
        assert resp.status_code == 404 and "nothing here" in resp.text, path
    resp = await client.get("/jobs?state=nope", headers={"Accept": "text/html"})
    assert resp.status_code == 400 and "unknown state" in resp.text
