"""Property-based fuzz of the JSON API, driven by its own OpenAPI document.

Hypothesis builds requests from /api/openapi.json (path and query parameters and JSON
bodies from their schemas, mixed with hostile text and arbitrary JSON) and sends them over
real HTTP. Every answer must be below 500, documented for its operation, and a JSON error
of the form {"error": "..."} when it is 4xx. Hypothesis runs in a worker thread (sync
httpx) while the server and the database live in the test's Trio loop.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import web_tasks
from webutil import client, start_web, web  # noqa: F401 - fixtures

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.text(max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def from_schema(doc: dict[str, Any], schema: dict[str, Any], ids: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """A small JSON-Schema -> strategy mapping (enough for this API's request schemas)."""
    schema = resolve(doc, schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        if depth > 2 or not props:
            return st.dictionaries(ANY_TEXT, JSON_VALUES, max_size=3)
        fields = {k: from_schema(doc, v, ids, depth + 1) for k, v in props.items()}
        return st.fixed_dictionaries(
            {k: s for k, s in fields.items() if k in required},
            optional={k: s for k, s in fields.items() if k not in required},
        )
    if kind == "array":
        items = from_schema(doc, schema.get("items", {}), ids, depth + 1)
        return st.lists(items, max_size=min(schema.get("maxItems", 5), 5))
    if kind == "integer":
        return st.integers(schema.get("minimum", -10), schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return st.sampled_from(ids) | st.uuids().map(str)
        if fmt == "date-time":
            return st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
        return st.sampled_from(schema.get("examples") or ["web_tasks.send_email"]) | ANY_TEXT
    return JSON_VALUES


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method.upper(), op) for path, ops in doc["paths"].items() for method, op in ops.items()
            if path != "/api/events"]


def request_strategy(doc: dict[str, Any], ids: list[str]) -> st.SearchStrategy[tuple[str, str, dict[str, Any], Any, dict[str, Any]]]:
    def build(entry: tuple[str, str, dict[str, Any]]) -> st.SearchStrategy[Any]:
        path, method, op = entry
        params = op.get("parameters", [])
        path_params = {p["name"]: (from_schema(doc, p["schema"], ids) | ANY_TEXT) for p in params if p["in"] == "path"}
        query = {p["name"]: (from_schema(doc, p["schema"], ids).map(str) | ANY_TEXT) for p in params if p["in"] == "query"}
        body: st.SearchStrategy[Any] = st.none()
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            body = from_schema(doc, schema, ids) | JSON_VALUES
        return st.tuples(
            st.just(path), st.just(method), st.just(op),
            st.fixed_dictionaries(path_params), st.fixed_dictionaries({}, optional=query), body,
        ).map(lambda t: (t[0], t[1], t[2], t[5], {"path": t[3], "query": t[4]}))

    return st.sampled_from(operations(doc)).flatmap(build)


def fuzz(url: str, doc: dict[str, Any], ids: list[str], seen: dict[str, int]) -> None:
    with httpx.Client(base_url=url, timeout=20) as client:

        @settings(max_examples=700, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(request_strategy(doc, ids))
        def check(req: tuple[str, str, dict[str, Any], Any, dict[str, Any]]) -> None:
            path, method, op, body, parts = req
            concrete = path
            for name, value in parts["path"].items():
                concrete = concrete.replace("{" + name + "}", quote(str(value).encode("utf-8", "surrogatepass"), safe=""))
            kwargs: dict[str, Any] = {"params": parts["query"], "headers": {"Content-Type": "application/json"}}
            if method == "POST" and body is not None:
                kwargs["json"] = body
            resp = client.request(method, concrete, **kwargs)
            seen[f"{method} {path} {resp.status_code}"] = seen.get(f"{method} {path} {resp.status_code}", 0) + 1
            assert resp.status_code < 500, (method, concrete, body, resp.text)
            assert str(resp.status_code) in op["responses"] or resp.status_code == 404 and "{" in path, (
                method, path, resp.status_code, resp.text)
            if resp.status_code >= 400:
                payload = resp.json()
                assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"]

        check()


async def test_openapi_driven_fuzz_finds_no_server_errors(client: httpx.AsyncClient, web: Any, fairchild: Any, caplog: Any) -> None:
    jobs = [await web_tasks.send_email.enqueue(to=str(i), subject="s") for i in range(3)]
    done = await web_tasks.send_email.enqueue_in(hours=1, to="x", subject="y")
    await fairchild.cancel_job(done)
    ids = [str(j.id) for j in [*jobs, done]]
    doc = (await client.get("/api/openapi.json")).json()
    seen: dict[str, int] = {}
    await trio.to_thread.run_sync(fuzz, web.url, doc, ids, seen)
    assert sum(seen.values()) >= 700
    ok = {k for k in seen if k.rsplit(" ", 1)[1].startswith("2")}
    assert len({k.rsplit(" ", 1)[0] for k in ok}) >= 10, sorted(seen)  # most operations also succeeded
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
