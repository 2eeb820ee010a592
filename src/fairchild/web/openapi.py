"""The OpenAPI 3.1 document of the JSON API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from .readmodels import STATES

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UUID = {"type": "string", "format": "uuid"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_STATE = {"type": "string", "enum": list(STATES)}
_WF_STATE = {"type": "string", "enum": ["running", "completed", "failed"]}
_ID_PARAM = {"name": "id", "in": "path", "required": True, "schema": _UUID}
_STATE_PARAM = {
    "name": "state", "in": "query", "required": False,
    "description": "Only jobs in these states (comma-separated or repeated).",
    "schema": {"type": "string", "examples": ["failed", "completed,discarded"]},
}
_PAGING = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
    {"name": "offset", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "default": 0}},
]
_MUTATION_ERRORS = (400, 401, 403, 404, 409, 422)


def openapi_document() -> dict[str, Any]:
    """The document, built fresh (it is small)."""
    job_summary = {
        "type": "object",
        "required": ["id", "task", "queue", "state"],
        "properties": {
            "id": _UUID, "task": {"type": "string"}, "queue": {"type": "string"}, "state": _STATE,
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
            "attempt": {"type": "integer"}, "max_attempts": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "parent_id": {"type": ["string", "null"], "format": "uuid"},
            "workflow_id": _UUID, "worker_id": {"type": ["string", "null"], "format": "uuid"},
            "cancel_reason": {"type": ["string", "null"]}, "error_count": {"type": "integer"},
            "scheduled_at": _TIME, "inserted_at": _TIME, "attempted_at": _TIME, "finished_at": _TIME,
        },
    }
    error_entry = {
        "type": "object",
        "properties": {
            "attempt": {"type": ["integer", "null"]}, "kind": {"type": ["string", "null"]},
            "type": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
            "traceback": {"type": ["string", "null"]}, "at": _TIME,
        },
    }
    job = {
        "allOf": [
            _ref("JobSummary"),
            {
                "type": "object",
                "properties": {
                    "args": {"type": "object"}, "result": {}, "timeout": {"type": ["number", "null"]},
                    "errors": {"type": "array", "items": _ref("JobError")},
                    "deps_pending": {"type": "integer"}, "children_pending": {"type": "integer"},
                },
            },
        ]
    }
    job_detail = {
        "allOf": [
            _ref("Job"),
            {
                "type": "object",
                "properties": {
                    "children": {"type": "array", "items": _ref("JobSummary")},
                    "children_total": {"type": "integer"},
                    "upstream": {"type": "array", "items": _ref("JobRef")},
                    "downstream": {"type": "array", "items": _ref("JobRef")},
                },
            },
        ]
    }
    counts = {"type": "object", "properties": {s: {"type": "integer"} for s in STATES},
              "required": list(STATES)}
    enqueue = {
        "type": "object",
        "required": ["task"],
        "additionalProperties": False,
        "properties": {
            "task": {"type": "string", "description": "Dotted name of a registered task",
                     "examples": ["myapp.tasks.send_email"]},
            "args": {"type": "object", "description": "Keyword arguments of the task"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
            "queue": {"type": "string", "minLength": 1, "maxLength": 128},
            "scheduled_at": {"type": "string", "format": "date-time"},
        },
    }
    enqueued = {
        "type": "object",
        "required": ["id", "task", "queue", "state", "scheduled_at"],
        "properties": {"id": _UUID, "task": {"type": "string"}, "queue": {"type": "string"},
                       "state": _STATE, "scheduled_at": {"type": "string", "format": "date-time"}},
    }
    queue = {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "paused": {"type": "boolean"}, "depth": {"type": "integer"},
            "available": {"type": "integer"}, "running": {"type": "integer"}, "counts": counts,
            "paused_changed_at": _TIME,
        },
    }
    workflow_summary = {
        "allOf": [_ref("JobSummary"),
                  {"type": "object", "properties": {"total": {"type": "integer"}, "counts": counts,
                                                    "workflow_state": _WF_STATE}}]
    }
    workflow = {
        "type": "object",
        "properties": {
            "id": _UUID, "root": {"oneOf": [_ref("JobSummary"), {"type": "null"}]},
            "total": {"type": "integer"}, "truncated": {"type": "boolean"}, "counts": counts,
            "workflow_state": _WF_STATE,
            "jobs": {"type": "array", "items": _ref("JobSummary")},
            "edges": {"type": "array", "items": {
                "type": "object", "properties": {"upstream": _UUID, "downstream": _UUID}}},
        },
    }
    worker = {
        "type": "object",
        "properties": {
            "id": _UUID, "hostname": {"type": "string"}, "pid": {"type": "integer"},
            "queues": {"type": ["array", "null"], "items": {"type": "string"}},
            "concurrency": {"type": "integer"}, "state": {"type": "string"},
            "running": {"type": "integer"}, "started_at": _TIME, "last_heartbeat_at": _TIME,
            "lease_expires_at": _TIME,
        },
    }
    operation_body = {
        "required": False,
        "content": {"application/json": {"schema": {
            "type": "object", "properties": {"reason": {"type": "string"}}}}},
    }

    def errs(*codes: int) -> dict[str, Any]:
        return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}

    paths: dict[str, Any] = {
        "/healthz": {"get": {
            "operationId": "health", "summary": "Liveness and database reachability", "security": [],
            "responses": {"200": _json({"type": "object"}, "Healthy"),
                          "503": _json({"type": "object"}, "Database unreachable")}}},
        "/api/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": _json({"type": "object"}, "OpenAPI document"), **errs(401)}}},
        "/api/stats": {"get": {
            "operationId": "stats", "summary": "Job counts by state",
            "responses": {"200": _json(counts, "Counts by state"), **errs(401)}}},
        "/api/throughput": {"get": {
            "operationId": "throughput", "summary": "Jobs completed and failed per minute",
            "parameters": [{"name": "minutes", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "minutes": {"type": "array", "items": {"type": "string", "format": "date-time"}},
                "completed": {"type": "array", "items": {"type": "integer"}},
                "failed": {"type": "array", "items": {"type": "integer"}}}}, "Series"),
                **errs(400, 401)}}},
        "/api/jobs": {
            "get": {
                "operationId": "listJobs", "summary": "List jobs, newest first",
                "parameters": [
                    _STATE_PARAM,
                    {"name": "queue", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "task", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "workflow_id", "in": "query", "required": False, "schema": _UUID},
                    *_PAGING,
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "next_cursor of the previous page (instead of offset)"},
                ],
                "responses": {"200": _json({"type": "object", "properties": {
                    "jobs": {"type": "array", "items": _ref("JobSummary")},
                    "limit": {"type": "integer"}, "offset": {"type": "integer"},
                    "next_cursor": {"type": ["string", "null"]}}}, "A page of jobs"),
                    **errs(400, 401)},
            },
            "post": {
                "operationId": "enqueue", "summary": "Enqueue a job of a registered task",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Enqueue")}}},
                "responses": {"201": _json(_ref("Enqueued"), "The new job"), **errs(400, 401, 403, 422)},
            },
        },
        "/api/jobs/{id}": {"get": {
            "operationId": "getJob", "summary": "A job in full, with its children and edges",
            "parameters": [_ID_PARAM],
            "responses": {"200": _json(_ref("JobDetail"), "The job"), **errs(400, 401, 404)}}},
        "/api/jobs/{id}/cancel": {"post": {
            "operationId": "cancelJob", "summary": "Cancel an unfinished job",
            "parameters": [_ID_PARAM], "requestBody": operation_body,
            "responses": {"200": _json(_ref("Job"), "The job now"), **errs(*_MUTATION_ERRORS)}}},
        "/api/jobs/{id}/retry": {"post": {
            "operationId": "retryJob", "summary": "Run a discarded or cancelled job again",
            "parameters": [_ID_PARAM], "requestBody": operation_body,
            "responses": {"200": _json(_ref("Job"), "The job now"), **errs(*_MUTATION_ERRORS)}}},
        "/api/jobs/cancel": {"post": {
            "operationId": "cancelJobs", "summary": "Cancel up to 1,000 jobs",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Ids")}}},
            "responses": {"200": _json(_ref("BulkResults"), "A result per id"), **errs(400, 401, 403)}}},
        "/api/jobs/retry": {"post": {
            "operationId": "retryJobs", "summary": "Retry up to 1,000 jobs",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Ids")}}},
            "responses": {"200": _json(_ref("BulkResults"), "A result per id"), **errs(400, 401, 403)}}},
        "/api/queues": {"get": {
            "operationId": "listQueues", "summary": "Queues with depth, running and paused",
            "responses": {"200": _json({"type": "object", "properties": {
                "queues": {"type": "array", "items": _ref("Queue")}}}, "Queues"), **errs(401)}}},
        "/api/queues/{name}/pause": {"post": {
            "operationId": "pauseQueue", "summary": "Stop workers claiming jobs of a queue",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object"}, "Paused"), **errs(400, 401, 403)}}},
        "/api/queues/{name}/resume": {"post": {
            "operationId": "resumeQueue", "summary": "Let workers claim jobs of a queue again",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object"}, "Resumed"), **errs(400, 401, 403)}}},
        "/api/workflows": {"get": {
            "operationId": "listWorkflows", "summary": "Workflows (roots with children), newest first",
            "parameters": [_STATE_PARAM, *_PAGING],
            "responses": {"200": _json({"type": "object", "properties": {
                "workflows": {"type": "array", "items": _ref("WorkflowSummary")}}}, "Workflows"),
                **errs(400, 401)}}},
        "/api/workflows/{id}": {"get": {
            "operationId": "getWorkflow", "summary": "A workflow: all its jobs and edges",
            "parameters": [_ID_PARAM],
            "responses": {"200": _json(_ref("Workflow"), "The workflow"), **errs(400, 401, 404)}}},
        "/api/workers": {"get": {
            "operationId": "listWorkers", "summary": "Worker processes",
            "responses": {"200": _json({"type": "object", "properties": {
                "workers": {"type": "array", "items": _ref("Worker")}}}, "Workers"), **errs(401)}}},
        "/api/events": {"get": {
            "operationId": "events", "summary": "Server-Sent Events: a `change` event per database notification",
            "responses": {"200": {"description": "An event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **errs(401)}}},
    }
    messages = {
        400: "Malformed request (bad JSON, id, filter or paging)",
        401: "Missing or wrong credentials",
        403: "Read-only server, action not allowed, or a CSRF check failed",
        404: "No such job or workflow",
        409: "The job's state does not allow this action",
        422: "Unknown task, or arguments that do not fit it",
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Fairchild API", "version": __version__,
                 "description": "Jobs, queues, workflows and workers of a Fairchild database. "
                                "State-changing requests need Content-Type: application/json."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "fairchild_session"},
            },
            "schemas": {
                "JobSummary": job_summary, "JobError": error_entry, "Job": job, "JobDetail": job_detail,
                "JobRef": {"type": "object", "properties": {"id": _UUID, "task": {"type": "string"}, "state": _STATE}},
                "Counts": counts, "Enqueue": enqueue, "Enqueued": enqueued, "Queue": queue,
                "WorkflowSummary": workflow_summary, "Workflow": workflow, "Worker": worker,
                "Ids": {"type": "object", "required": ["ids"], "properties": {
                    "ids": {"type": "array", "items": _UUID, "minItems": 1, "maxItems": 1000}}},
                "BulkResults": {"type": "object", "properties": {"results": {"type": "array", "items": {
                    "type": "object", "properties": {"id": _UUID, "ok": {"type": "boolean"},
                                                     "state": _STATE, "error": {"type": "string"}}}}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            },
            "responses": {
                f"E{c}": {"description": m, "content": {"application/json": {"schema": _ref("Error")}}}
                for c, m in messages.items()
            },
        },
    }
