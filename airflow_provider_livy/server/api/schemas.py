"""The API's shapes for its OpenAPI description: request and view schemas, parameters, error answers.

Routes return plain dicts, not response models, so documenting costs nothing at run time; the fuzz test
holds the server to these shapes. The request fields come from protocol.py, shared with the hooks.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_livy.protocol import (
    BATCH_REQUEST_FIELDS,
    BATCH_STATES,
    BATCHES,
    DURATION,
    INT,
    KIND_ALIASES,
    KNOWN_KINDS,
    NON_NEGATIVE_INT,
    RESOURCE_FIELDS,
    SESSION_REQUEST_FIELDS,
    SESSION_STATES,
    SESSIONS,
    STATE_WAIT_PARAM,
    STATEMENT_KINDS,
    STATEMENT_STATES,
    STR,
    STR_LIST,
)

MAX_LIST_PAGE = 10_000
LIVY_API_VERSION = "0.9.0"
MAX_LOG_PAGE = 1_000_000
_JSON_TYPES = {
    STR: {"type": "string"},
    INT: {"type": "integer", "minimum": 1},
    NON_NEGATIVE_INT: {"type": "integer", "minimum": 0},
    DURATION: {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|min|h|d)$"},
    STR_LIST: {"type": "array", "items": {"type": "string"}},
}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional request field may be null, which means "not set" (as Jackson reads Livy's Option fields)."""
    return {"anyOf": [schema, {"type": "null"}]}


def request_schema(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}  # conf
    properties = {field: _JSON_TYPES.get(kind, string_map) for field, kind in fields.items()}
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": {field: schema if field in required else nullable(schema) for field, schema in properties.items()},
    }


BATCH_REQUEST_SCHEMA = request_schema(BATCH_REQUEST_FIELDS, ["file"])
SESSION_REQUEST_SCHEMA = request_schema(SESSION_REQUEST_FIELDS, [])
SESSION_REQUEST_SCHEMA["properties"]["kind"] = nullable({"type": "string", "enum": [*KNOWN_KINDS, *KIND_ALIASES]})

# Response shapes for the OpenAPI description (the fuzz test holds the server to them). Routes
# return plain dicts, not response models, so documenting costs nothing at run time.
NULLABLE_STR = {"type": ["string", "null"]}
ERROR_SCHEMA = {"type": "object", "required": ["msg"], "properties": {"msg": {"type": "string"}}}
BATCH_VIEW_SCHEMA = {
    "type": "object",
    "required": ["id", "name", "owner", "proxyUser", "state", "appId", "appInfo", "log"],
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": NULLABLE_STR,
        "owner": NULLABLE_STR,
        "proxyUser": NULLABLE_STR,
        "state": {"type": "string", "enum": list(BATCH_STATES)},
        "appId": NULLABLE_STR,
        "appInfo": {
            "type": "object",
            "required": ["driverLogUrl", "sparkUiUrl", "executorLogUrls"],
            "properties": {"driverLogUrl": NULLABLE_STR, "sparkUiUrl": NULLABLE_STR, "executorLogUrls": NULLABLE_STR},
        },
        "log": {"type": "array", "items": {"type": "string"}},
        "createdAt": {"type": "number"},
        "finishedAt": {"type": ["number", "null"]},
        "expiresAt": {"type": ["number", "null"]},
    },
}
NULLABLE_INT = {"type": ["integer", "null"]}
SESSION_VIEW_SCHEMA = {
    "type": "object",
    "required": [
        "id",
        "name",
        "appId",
        "owner",
        "proxyUser",
        "state",
        "kind",
        "appInfo",
        "log",
        *RESOURCE_FIELDS,
        "conf",
        "heartbeatTimeoutInSecond",
        "ttl",
        "idleTimeout",
    ],
    "properties": {
        **BATCH_VIEW_SCHEMA["properties"],
        "state": {"type": "string", "enum": list(SESSION_STATES)},
        "kind": {"type": "string"},
        **{field: NULLABLE_INT if BATCH_REQUEST_FIELDS[field] == INT else NULLABLE_STR for field in RESOURCE_FIELDS},
        "conf": {"type": "object", "additionalProperties": {"type": "string"}},
        "heartbeatTimeoutInSecond": {"type": "integer", "minimum": 0},
        "ttl": NULLABLE_STR,
        "idleTimeout": NULLABLE_STR,
        "lastActivityAt": {"type": "number"},
    },
}


def list_schema(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["from", "total", "sessions"],
        "properties": {
            "from": {"type": "integer", "minimum": 0},
            "total": {"type": "integer", "minimum": 0},
            "sessions": {"type": "array", "items": view},
        },
    }


def state_schema(states: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "state"],
        "properties": {"id": {"type": "integer", "minimum": 0}, "state": {"type": "string", "enum": list(states)}},
    }


VIEW_SCHEMAS = {BATCHES.name: BATCH_VIEW_SCHEMA, SESSIONS.name: SESSION_VIEW_SCHEMA}
REQUEST_SCHEMAS = {BATCHES.name: BATCH_REQUEST_SCHEMA, SESSIONS.name: SESSION_REQUEST_SCHEMA}
LOG_SCHEMA = {
    "type": "object",
    "required": ["id", "from", "total", "log"],
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "from": {"type": "integer", "minimum": 0},
        "total": {"type": "integer", "minimum": 0},
        "log": {"type": "array", "items": {"type": "string"}},
    },
}
ERROR_TEXT = {
    400: "Rejected request (bad body, parameter or missing CSRF header)",
    401: "Authentication required (livy.server.auth.type = basic)",
    403: "Not allowed for this user (access control, impersonation)",
    404: "No such batch, session or statement",
    409: "The session is not up (starting or ended): no statements",
    413: "Request body over livy.server.request.max-body-bytes",
    429: "The session's driver holds as many unfinished statements as it may keep; retry later",
    503: "Busy, state store or session driver unavailable; retry after Retry-After seconds",
}
VERSION_SCHEMA = {
    "type": "object",
    "required": ["version"],
    "properties": {"version": {"type": "string"}, "server": {"type": "string"}, "serverVersion": {"type": "string"}},
}
KEY_PARAMETER = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}, "description": "id or name"}
WAIT_PARAMETER = {
    "name": STATE_WAIT_PARAM,
    "in": "query",
    "required": False,
    "schema": {"type": "number", "minimum": 0},
    "description": "hold the answer until the state changes or this many seconds pass (capped by the server)",
}


# Statements (interactive sessions only): the driver's answers, passed through as it sends them.
STATEMENT_SCHEMA = {
    "type": "object",
    "required": ["id", "code", "state", "output", "progress", "started", "completed"],
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "code": {"type": "string"},
        "state": {"type": "string", "enum": list(STATEMENT_STATES)},
        "output": {"type": ["object", "null"]},
        "progress": {"type": "number"},
        "started": {"type": "integer"},
        "completed": {"type": "integer"},
    },
}
STATEMENT_LIST_SCHEMA = {
    "type": "object",
    "required": ["total_statements", "statements"],
    "properties": {
        "total_statements": {"type": "integer", "minimum": 0},
        "statements": {"type": "array", "items": STATEMENT_SCHEMA},
    },
}
CODE_KIND = {"code": {"type": "string"}, "kind": nullable({"type": "string", "enum": list(STATEMENT_KINDS)})}
STATEMENT_REQUEST_SCHEMA = {"type": "object", "required": ["code"], "additionalProperties": False, "properties": CODE_KIND}
COMPLETION_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["code"],
    "additionalProperties": False,
    "properties": {**CODE_KIND, "cursor": nullable({"type": "integer", "minimum": 0})},
}
COMPLETION_SCHEMA = {
    "type": "object",
    "required": ["candidates"],
    "properties": {"candidates": {"type": "array", "items": {"type": "string"}}},
}
SID_PARAMETER = {"name": "sid", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
ORDER_PARAMETER = {"name": "order", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}}
CALLBACK_SCHEMA = {
    "type": "object",
    "required": ["address"],
    "properties": {
        "address": {"type": "string"},
        "appId": {"type": ["string", "null"]},
        "sparkUiUrl": {"type": ["string", "null"]},
    },
}


def body_json(body: dict[str, Any] | None) -> dict[str, Any]:
    """FastAPI `openapi_extra=` for a required JSON request body."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}} if body else {}


def paging_parameters(size_low: int | None, size_high: int, from_low: int | None = 0) -> list[dict[str, Any]]:
    size_schema: dict[str, Any] = {"type": "integer", "maximum": size_high}
    if size_low is not None:
        size_schema["minimum"] = size_low
    from_schema: dict[str, Any] = {"type": "integer", "maximum": 2**31}
    if from_low is not None:
        from_schema["minimum"] = from_low
    return [
        {"name": "from", "in": "query", "required": False, "schema": from_schema},
        {"name": "size", "in": "query", "required": False, "schema": size_schema},
    ]


def documented(schema: dict[str, Any] | None, *errors: int, ok: int = 200) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=`: the success body and each error as {"msg": ...}."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": ERROR_TEXT[status], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        for status in (401, *errors)
    }
    if schema is not None:
        responses[ok] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    return responses
