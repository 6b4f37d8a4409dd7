"""Routes only interactive sessions have: statements, cancel, completion, and the drivers' callback.

Statements live in the session's driver (so a restarted server loses none, and the server holds
none); these routes check access and the session's state, then pass the call through the REPL
channel and the driver's answer back unparsed. Submitting, cancelling and completing are
activity (the idle clock restarts); reading is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from airflow_provider_livy.protocol import (
    STATE_WAIT_PARAM,
    STATEMENT_KINDS,
    STATEMENT_STATES,
    BatchRequestError,
    validate_completion_request,
    validate_statement_request,
)
from airflow_provider_livy.server.api.parsing import WAIT_ERROR, ApiError, parse_wait, query_int, read_json_body
from airflow_provider_livy.server.api.schemas import (
    ERROR_SCHEMA,
    KEY_PARAMETER,
    MAX_LIST_PAGE,
    WAIT_PARAMETER,
    documented,
    nullable,
    paging_parameters,
)
from airflow_provider_livy.server.security import AccessPolicy
from airflow_provider_livy.server.sessions.interactive import SessionNotReady
from airflow_provider_livy.server.sessions.lifecycle import SessionService
from airflow_provider_livy.server.sessions.registry import Batch
from airflow_provider_livy.server.sessions.repl_client import ReplRefused, ReplUnreachable

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
Lookup = Callable[[str, Request, bool], Batch]


def json_bytes(raw: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(raw, status_code=status, media_type="application/json", headers=headers)


def body_json(body: dict[str, Any] | None) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}} if body else {}


def add_statement_routes(app: FastAPI, service: SessionService, policy: AccessPolicy, lookup: Lookup) -> None:
    interactive = service.interactive
    assert interactive is not None
    config = service.config

    async def driver_call(batch: Batch, method: str, path: str, *, activity: bool = False, **kwargs: Any) -> bytes:
        """The driver's answer, with its refusals passed on and its silence a 503 clients retry."""
        try:
            return await interactive.call(batch, method, path, activity=activity, **kwargs)
        except SessionNotReady as err:
            raise ApiError(409, str(err)) from None
        except ReplRefused as err:
            raise ApiError(err.status if err.status in (400, 404, 429) else 503, str(err), {"Retry-After": "1"}) from None
        except ReplUnreachable as err:
            raise ApiError(503, str(err), {"Retry-After": "1"}) from None

    async def list_statements(key: str, request: Request) -> Response:
        batch = lookup(key, request, False)
        params: dict[str, Any] = {"from": query_int(request, "from", 0, 0, 2**31)}
        if (size := query_int(request, "size", None, 0, MAX_LIST_PAGE)) is not None:
            params["size"] = size
        order = request.query_params.get("order")
        if order not in (None, "asc", "desc"):
            raise ApiError(400, f"query parameter 'order' must be asc or desc, got {order!r}")
        if order == "desc":
            params["order"] = "desc"
        return json_bytes(await driver_call(batch, "GET", "/statements", params=params))

    app.add_api_route(
        "/sessions/{key}/statements",
        list_statements,
        methods=["GET"],
        response_model=None,
        responses=documented(STATEMENT_LIST_SCHEMA, 400, 403, 404, 409, 503),
        openapi_extra={"parameters": [KEY_PARAMETER, *paging_parameters(0, MAX_LIST_PAGE), ORDER_PARAMETER]},
    )

    async def submit(key: str, request: Request) -> Response:
        batch = lookup(key, request, True)
        try:
            body = validate_statement_request(await read_json_body(request, config.max_body_bytes))
        except BatchRequestError as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        raw = await driver_call(batch, "POST", "/statements", activity=True, body=body)
        statement_id = interactive.statement_id(raw)
        return json_bytes(raw, 201, {"Location": f"/sessions/{batch.id}/statements/{statement_id}"})

    app.add_api_route(
        "/sessions/{key}/statements",
        submit,
        methods=["POST"],
        status_code=201,
        response_model=None,
        responses=documented(STATEMENT_SCHEMA, 400, 403, 404, 409, 413, 429, 503, ok=201),
        openapi_extra=body_json(STATEMENT_REQUEST_SCHEMA),
    )

    async def statement(key: str, sid: int, request: Request) -> Response:
        """Long-pollable: with ?wait=S the answer comes when the statement's state changes, or after S seconds."""
        batch = lookup(key, request, False)
        wait = 0.0
        if (text := request.query_params.get(STATE_WAIT_PARAM)) is not None and (wait := parse_wait(text)) is None:
            raise ApiError(400, WAIT_ERROR.format(text))
        wait = min(wait, config.state_wait_max)
        params = {STATE_WAIT_PARAM: f"{wait:g}"} if wait > 0 else None
        return json_bytes(await driver_call(batch, "GET", f"/statements/{sid}", params=params, wait=wait))

    app.add_api_route(
        "/sessions/{key}/statements/{sid}",
        statement,
        methods=["GET"],
        response_model=None,
        responses=documented(STATEMENT_SCHEMA, 400, 403, 404, 409, 503),
        openapi_extra={"parameters": [KEY_PARAMETER, SID_PARAMETER, WAIT_PARAMETER]},
    )

    async def cancel(key: str, sid: int, request: Request) -> Response:
        batch = lookup(key, request, True)
        return json_bytes(await driver_call(batch, "POST", f"/statements/{sid}/cancel", activity=True))

    app.add_api_route(
        "/sessions/{key}/statements/{sid}/cancel",
        cancel,
        methods=["POST"],
        response_model=None,
        responses=documented(ERROR_SCHEMA, 400, 403, 404, 409, 503),
    )

    async def completion(key: str, request: Request) -> Response:
        batch = lookup(key, request, True)
        try:
            body = validate_completion_request(await read_json_body(request, config.max_body_bytes))
        except BatchRequestError as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        return json_bytes(await driver_call(batch, "POST", "/completion", activity=True, body=body))

    app.add_api_route(
        "/sessions/{key}/completion",
        completion,
        methods=["POST"],
        response_model=None,
        responses=documented(COMPLETION_SCHEMA, 400, 403, 404, 409, 413, 503),
        openapi_extra=body_json(COMPLETION_REQUEST_SCHEMA),
    )

    async def driver_ready(session_id: int, request: Request) -> JSONResponse:
        """The REPL's call once it listens: authenticated by the session's secret, not by user auth.
        Any refusal makes the driver stop, so a driver nobody owns does not linger."""
        batch = service.registry.batches.get(session_id)
        if batch is None or not interactive.authentic(batch, request.headers.get("authorization")):
            raise ApiError(401, "unknown session or wrong secret")
        if not batch.active or batch.kill_requested:
            raise ApiError(409, f"session {batch.id} is {batch.state}")
        body = await read_json_body(request, 65536)
        address = body.get("address") if isinstance(body, dict) else None
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise ApiError(400, "the callback needs the REPL's address as http://host:port")
        text = {k: v if isinstance(v, str) else None for k in ("appId", "sparkUiUrl") if (v := body.get(k)) is not None}
        interactive.ready(batch, address.rstrip("/"), text.get("appId"), text.get("sparkUiUrl"))
        return JSONResponse({"msg": "ok"})

    app.add_api_route(
        "/internal/repl/{session_id}",
        driver_ready,
        methods=["POST"],
        include_in_schema=False,  # the drivers' channel, not a client API
        response_model=None,
        openapi_extra=body_json(CALLBACK_SCHEMA),
    )
