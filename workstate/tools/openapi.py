"""The OpenAPI 3.1 document of the Work API, generated from the route table, the codec and the rules.

:func:`document` returns the document of a dialect as a JSON value (a dict; ``qoder`` today, one per dialect
when the dialect issue comes). Pure: ``python -m workstate.cli.docgen`` writes it to ``docs/openapi.json``
and :class:`workstate.asgi.WorkstateApp` serves it at ``/openapi.json``.

Where each part comes from:

- the paths and operations: :mod:`workstate.api.routes` (:data:`~workstate.api.routes.BASE_PATH`,
  :func:`~workstate.api.routes.work_path`, :data:`~workstate.api.routes.OPERATIONS`);
- the objects' keys: the codec's own encodings (:class:`~workstate.api.codec.WorkObject`,
  :class:`~workstate.api.codec.HeartbeatObject`, :class:`~workstate.api.codec.StatsObject`,
  :class:`~workstate.api.codec.ListEnvelope`, :class:`~workstate.api.codec.ErrorEnvelope`): every key an
  encoded sample holds is a required property, and a key this module has no schema for fails the generation;
- the error statuses of each item operation: the rejections the rules of :data:`workstate.rules.DECLARATION`
  give to its triggers (409, 412), besides what every request may get (400, 401, 403, 404) and what the HTTP
  edge answers itself (408: the body stalled, 413: the body is over 1 MiB).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..api.codec import ERROR_TYPES, ErrorEnvelope, HeartbeatObject, ListEnvelope, StatsObject, WorkObject
from ..api.routes import OPERATIONS
from ..dialect import DIALECTS as _SHIPPED
from ..dialect import QODER, Dialect, ErrorStyle, ListStyle, StopAnswer, dialect_named
from ..rules import DECLARATION, Reason, State, Trigger

__all__ = ["DIALECTS", "document"]

DIALECTS = tuple(_SHIPPED)
"""The dialects that have a document (every shipped one)."""

_T = datetime(2026, 7, 1, 8, 15, 1, tzinfo=UTC)
_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}


def _id(prefix: str, nullable: bool = False, dialect: Dialect = QODER) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"] if nullable else "string"}
    schema["pattern"] = f"^{prefix}{dialect.ids.pattern}$"
    return schema


_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


# The schema of every key the codec writes, by object. A key the codec writes that is missing here fails.
_PROPERTIES: dict[str, dict[str, Any]] = {
    "Work": {
        "id": _id("work_"),
        "type": {"const": "work"},
        "environment_id": _id("env_"),
        "data": _ref("Session"),
        "state": {"enum": [s.value for s in State]},
        "created_at": _TIMESTAMP,
        "acknowledged_at": _NULLABLE_TIMESTAMP,
        "started_at": _NULLABLE_TIMESTAMP,
        "latest_heartbeat_at": _NULLABLE_TIMESTAMP,
        "stop_requested_at": _NULLABLE_TIMESTAMP,
        "stopped_at": _NULLABLE_TIMESTAMP,
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "Session": {"type": {"const": "session"}, "id": _id("sess_")},
    "Heartbeat": {
        "type": {"const": "work_heartbeat"},
        "last_heartbeat": _TIMESTAMP,
        "lease_extended": {"type": "boolean"},
        "state": {"enum": [s.value for s in State]},
        "ttl_seconds": {"type": "integer", "minimum": 1},
    },
    "Stats": {
        "type": {"const": "work_queue_stats"},
        "depth": {"type": "integer", "minimum": 0},
        "pending": {"type": "integer", "minimum": 0},
        "oldest_queued_at": _NULLABLE_TIMESTAMP,
        "workers_polling": {"type": "integer", "minimum": 0},
    },
    "WorkList": {
        "data": {"type": "array", "items": _ref("Work")},
        "first_id": _id("work_", nullable=True),
        "last_id": _id("work_", nullable=True),
        "has_more": {"type": "boolean"},
        "next_page": _id("work_", nullable=True),
    },
    "Error": {
        "type": {"const": "error"},
        "request_id": {"type": "string"},
        "error": _ref("ErrorDetail"),
    },
    "ErrorDetail": {
        "type": {"type": "string", "minLength": 1, "examples": sorted(ERROR_TYPES)},
        "message": {"type": "string"},
        "param": {"type": "string"},
    },
}


def _properties(dialect: Dialect) -> dict[str, dict[str, Any]]:
    """The schema of every key the codec writes in ``dialect``: :data:`_PROPERTIES` (the ``qoder`` dialect's) with
    the dialect's ids, and its work object, list envelope and error envelope where they differ."""
    if dialect == QODER:
        return _PROPERTIES
    found = {name: dict(properties) for name, properties in _PROPERTIES.items()}
    work = found["Work"]
    for key, prefix, nullable in (("id", "work_", False), ("environment_id", "env_", False)):
        work[key] = _id(prefix, nullable, dialect)
    if dialect.secret_field:
        work["secret"] = {
            "type": ["string", "null"],
            "description": "Set only on a poll's answer (a per-delivery secret), null on every other read",
        }
    session = _id(dialect.session_prefix, dialect=dialect)
    if dialect.healthcheck_items:
        found["Session"] = {
            "type": {"enum": ["session", "healthcheck"]},
            "id": {"type": "string", "minLength": 1, "description": f"A session id ({session['pattern']}), or a "
                   "health probe's id"},
        }  # fmt: skip
    else:
        found["Session"]["id"] = session
    if dialect.list_style is ListStyle.NEXT_PAGE:
        found["WorkList"] = {
            "data": {"type": "array", "items": _ref("Work")},
            "next_page": {"type": ["string", "null"], "description": "An opaque cursor: send it back as page"},
        }
    if dialect.error_style is ErrorStyle.DETAILS:
        detail = found["ErrorDetail"]
        del detail["param"]
        detail["details"] = {
            "type": "object",
            "description": "A failed heartbeat precondition's error_code, error_visibility and the item's "
            "current_state (state, last_heartbeat, lease_updated_at, lease_extended, ttl_seconds)",
        }
    return found


def _samples(dialect: Dialect = QODER) -> dict[str, dict[str, Any]]:
    """One encoding of each codec object: its keys are the schema's required properties."""
    work = WorkObject(
        id="work_" + "1" * 32, environment_id="env_" + "1" * 32, session_id=dialect.session_prefix + "1" * 32,
        state=State.QUEUED, created_at=_T,
    )  # fmt: skip
    encoded = work.to_json(dialect)
    error = ErrorEnvelope(request_id="req_1", error_type="invalid_request_error", message="m").to_json(dialect)
    return {
        "Work": encoded,
        "Session": encoded["data"],
        "Heartbeat": HeartbeatObject(
            last_heartbeat=_T, lease_extended=True, state=State.ACTIVE, ttl_seconds=60
        ).to_json(),
        "Stats": StatsObject(depth=0, pending=0, oldest_queued_at=None, workers_polling=0).to_json(),
        "WorkList": ListEnvelope(data=(work,), has_more=False).to_json(dialect),
        "Error": error,
        "ErrorDetail": error["error"],
    }


def _schemas(dialect: Dialect = QODER) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    every = _properties(dialect)
    for name, sample in _samples(dialect).items():
        properties = every[name]
        unknown = sorted(set(sample) - set(properties))
        if unknown:
            raise ValueError(f"the codec writes {name}.{unknown[0]}, which the OpenAPI generator has no schema for")
        required = list(sample)
        if name == "ErrorDetail":
            required = ["type", "message"]  # param is written only when a parameter is to blame
        schemas[name] = {
            "type": "object",
            "required": required,
            "properties": properties,
            "additionalProperties": False,
        }
    return schemas


# What each operation is: (method, on one item?, last path segment, the rules' triggers, summary); the
# triggers' rejections add the operation's 409 and 412.
_OPERATIONS: dict[str, tuple[str, bool, str | None, tuple[Trigger, ...], str]] = {
    "poll": ("get", False, "poll", (), "Poll for the oldest deliverable item"),
    "ack": ("post", True, "ack", (Trigger.ACK,), "Acknowledge a delivered item"),
    "heartbeat": ("post", True, "heartbeat", (Trigger.HEARTBEAT,), "Heartbeat: start, or extend the lease"),
    "stop": ("post", True, "stop", (Trigger.STOP, Trigger.FORCE_STOP), "Request a stop, confirm one, or force it"),
    "get": ("get", True, None, (), "Read one work item"),
    "update": ("post", True, None, (Trigger.UPDATE_METADATA,), "Merge metadata into a work item"),
    "list": ("get", False, None, (), "List the environment's work items"),
    "stats": ("get", False, "stats", (), "Queue statistics"),
}

_STATUS_TEXT = {
    200: "The answer",
    400: "A malformed request (parameter, header, body), or an environment that is not self_hosted",
    401: "No bearer token",
    403: "The authorizer refuses the token",
    404: "No such route, environment or work item",
    408: "The body did not arrive in time (the HTTP edge)",
    409: "The lifecycle refuses the request in the item's state",
    412: "expected_last_heartbeat does not match the lease",
    413: "The body is over 1 MiB (the HTTP edge)",
}


def _worker_id(dialect: Dialect, operation: str) -> dict[str, Any]:
    binds = "; an ack binds the item to it" if dialect.ack_checks_worker else " (stored for workers_polling)"
    return {
        "name": dialect.worker_header,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1},
        "description": "The worker's id" + binds,
    }


_REQUEST_ID = {
    "name": "x-request-id",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Echoed as the error envelope's request_id",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _parameters(operation: str, dialect: Dialect = QODER) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if operation == "poll":
        found += [
            _query("block_ms", {"type": "integer", "minimum": 1, "maximum": 999}, "How long the poll may wait"),
            _query("reclaim_older_than_ms", {"type": "integer", "minimum": 0}, "Redeliver items delivered so long ago"),
            _worker_id(dialect, operation),
        ]
    elif operation == "ack" and dialect.ack_checks_worker:
        found.append(_worker_id(dialect, operation))
    elif operation == "heartbeat":
        found += [
            _query("expected_last_heartbeat", {"type": "string"}, "The last_heartbeat this worker holds (fencing)"),
            _query("desired_ttl_seconds", {"type": "integer", "minimum": 1}, "The lease TTL asked for (clamped)"),
        ]
    elif operation == "list" and dialect.list_style is ListStyle.NEXT_PAGE:
        found += [
            _query("limit", {"type": "integer", "minimum": 1}, "Items per page (over the maximum: capped)"),
            _query("page", {"type": "string", "minLength": 1}, "The cursor a page's next_page gave"),
        ]
    elif operation == "list":
        found += [
            _query("limit", {"type": "integer", "minimum": 1}, "Items per page"),
            _query("page", _id("work_"), "Continue after this id"),
            _query("after_id", _id("work_"), "Items after this id"),
            _query("before_id", _id("work_"), "Items just before this id"),
        ]
    found.append(_REQUEST_ID)
    return found


def _body(operation: str) -> dict[str, Any] | None:
    if operation == "update":
        schema = {
            "type": "object",
            "properties": {"metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
            "additionalProperties": False,
        }
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    if operation == "stop":
        schema = {
            "type": "object",
            "properties": {"force": {"type": "boolean"}},
            "additionalProperties": False,
            "description": 'Empty, {} or {"force": true|false}; {"force": null} is a 400',
        }
        return {"required": False, "content": {"application/json": {"schema": schema}}}
    return None


def _answer(operation: str) -> dict[str, Any]:
    if operation == "poll":
        return {"oneOf": [_ref("Work"), {"type": "null"}]}
    return _ref({"heartbeat": "Heartbeat", "list": "WorkList", "stats": "Stats"}.get(operation, "Work"))


def _statuses(triggers: tuple[Trigger, ...]) -> list[int]:
    """Every status a request of the operation may be answered: the rules' rejections of its triggers and the rest."""
    found = {400, 401, 403, 404, 408, 413}
    for line in DECLARATION:
        outcome = line[6]
        if line[2] in triggers and isinstance(outcome, Reason):
            found.add(outcome.status)
    return sorted(found)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(name: str, dialect: Dialect = QODER) -> tuple[str, str, dict[str, Any]]:
    method, on_item, segment, triggers, summary = _OPERATIONS[name]
    path = dialect.path("{environment_id}", "{work_id}" if on_item else None, segment)
    responses: dict[str, Any] = {"200": {"description": _STATUS_TEXT[200], "content": _json(_answer(name))}}
    if name == "stop" and dialect.stop_answer is StopAnswer.NO_CONTENT:
        responses = {"204": {"description": "Accepted or replayed: no body, no content type"}}
    elif name == "heartbeat" and dialect.guards["stopped_heartbeat_reports"]:
        responses["200"]["description"] = (
            "The answer; on a stopped item state stopped and lease_extended false (the worker ends the session)"
        )
    for status in _statuses(triggers):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "parameters": _parameters(name, dialect),
        "responses": responses,
    }
    body = _body(name)
    if body is not None:
        operation["requestBody"] = body
    return path, method, operation


def _path_parameters(path: str) -> list[dict[str, Any]]:
    found = [{"name": "environment_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    if "{work_id}" in path:
        found.append({"name": "work_id", "in": "path", "required": True, "schema": {"type": "string"}})
    return found


def document(dialect: str | Dialect = "qoder") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the Work API in ``dialect`` (a shipped dialect or its name) as a JSON value."""
    name_of = dialect.name if isinstance(dialect, Dialect) else dialect
    if name_of not in DIALECTS or (isinstance(dialect, Dialect) and dialect != _SHIPPED[name_of]):
        raise ValueError(f"no OpenAPI document for dialect {name_of!r}; known: {list(DIALECTS)}")
    spoken = dialect_named(name_of)
    paths: dict[str, Any] = {}
    for name in OPERATIONS:
        path, method, operation = _operation(name, spoken)
        entry = paths.setdefault(path, {"parameters": _path_parameters(path)})
        entry[method] = operation
    statuses = sorted({s for name in OPERATIONS for s in _statuses(_OPERATIONS[name][3])})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Work API (self-hosted workers)",
            "version": "1",
            "description": (
                "The Work item lifecycle of a self-hosted worker API, as workstate's reference server answers it "
                f"(dialect {name_of}). Generated by workstate.tools.openapi from the route table, the codec and "
                "the rules; see docs/lifecycle.md and docs/errors.md."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(spoken),
            "responses": {
                f"E{status}": {"description": _STATUS_TEXT[status], "content": _json(_ref("Error"))}
                for status in statuses
            },
        },
        "x-base-path": spoken.base_path,
    }
