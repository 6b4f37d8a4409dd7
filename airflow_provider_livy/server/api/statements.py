"""Routes only interactive sessions have: statements, cancel, completion, and the drivers' callback.

Statements live in the session's driver (so a restarted server loses none, and the server holds
none); these routes check access and the session's state, then pass the call through the REPL
channel and the driver's answer back unparsed. Submitting, cancelling and completing are
activity (the idle clock restarts); reading is not.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from airflow_provider_livy.protocol import (
    STATE_WAIT_PARAM,
    RequestError,
    validate_completion_request,
    validate_statement_request,
)
from airflow_provider_livy.server.api.access import MODIFY, VIEW, authorize
from airflow_provider_livy.server.api.parsing import WAIT_ERROR, ApiError, parse_wait, query_int, read_json_body
from airflow_provider_livy.server.api.schemas import (
    CALLBACK_SCHEMA,
    COMPLETION_REQUEST_SCHEMA,
    COMPLETION_SCHEMA,
    ERROR_SCHEMA,
    KEY_PARAMETER,
    MAX_LIST_PAGE,
    ORDER_PARAMETER,
    SID_PARAMETER,
    STATEMENT_LIST_SCHEMA,
    STATEMENT_REQUEST_SCHEMA,
    STATEMENT_SCHEMA,
    WAIT_PARAMETER,
    body_json,
    documented,
    paging_parameters,
)
from airflow_provider_livy.server.security import AccessPolicy
from airflow_provider_livy.server.sessions.interactive import Interactive, SessionNotReady
from airflow_provider_livy.server.sessions.lifecycle import SessionService
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.sessions.repl_client import ReplRefused, ReplUnreachable

CALLBACK_BODY_LIMIT = 65536


def json_bytes(raw: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(raw, status_code=status, media_type="application/json", headers=headers)


def rejected(err: RequestError) -> ApiError:
    return ApiError(400, f"Rejected, Reason: {err}")


class StatementRoutes:
    """The statement routes of the interactive family's service."""

    def __init__(self, service: SessionService, policy: AccessPolicy) -> None:
        interactive = service.family.interactive
        assert interactive is not None, "statements need the interactive family"
        self.service = service
        self.policy = policy
        self.interactive: Interactive = interactive
        self.config = service.config

    def install(self, app: FastAPI) -> None:
        one = "/sessions/{key}/statements/{sid}"
        routes: list[tuple[str, Any, str, dict[str, Any]]] = [
            ("/sessions/{key}/statements", self.list_statements, "GET", {
                "responses": documented(STATEMENT_LIST_SCHEMA, 400, 403, 404, 409, 503),
                "openapi_extra": {"parameters": [KEY_PARAMETER, *paging_parameters(0, MAX_LIST_PAGE), ORDER_PARAMETER]}}),
            ("/sessions/{key}/statements", self.submit, "POST", {
                "status_code": 201, "responses": documented(STATEMENT_SCHEMA, 400, 403, 404, 409, 413, 429, 503, ok=201),
                "openapi_extra": body_json(STATEMENT_REQUEST_SCHEMA)}),
            (one, self.statement, "GET", {
                "responses": documented(STATEMENT_SCHEMA, 400, 403, 404, 409, 503),
                "openapi_extra": {"parameters": [KEY_PARAMETER, SID_PARAMETER, WAIT_PARAMETER]}}),
            (f"{one}/cancel", self.cancel, "POST", {"responses": documented(ERROR_SCHEMA, 400, 403, 404, 409, 503)}),
            ("/sessions/{key}/completion", self.completion, "POST", {
                "responses": documented(COMPLETION_SCHEMA, 400, 403, 404, 409, 413, 503),
                "openapi_extra": body_json(COMPLETION_REQUEST_SCHEMA)}),
            ("/internal/repl/{session_id}", self.driver_ready, "POST", {
                "include_in_schema": False,  # the drivers' channel, not a client API
                "openapi_extra": body_json(CALLBACK_SCHEMA)}),
        ]  # fmt: skip
        for route_path, endpoint, method, extra in routes:
            app.add_api_route(route_path, endpoint, methods=[method], response_model=None, **extra)

    async def driver_call(self, session: Session, method: str, path: str, *, activity: bool = False, **kwargs: Any) -> bytes:
        """The driver's answer, with its refusals passed on and its silence a 503 clients retry."""
        try:
            return await self.interactive.call(session, method, path, activity=activity, **kwargs)
        except SessionNotReady as err:
            raise ApiError(409, str(err)) from None
        except ReplRefused as err:
            raise ApiError(err.status if err.status in (400, 404, 429) else 503, str(err), {"Retry-After": "1"}) from None
        except ReplUnreachable as err:
            raise ApiError(503, str(err), {"Retry-After": "1"}) from None

    async def list_statements(self, key: str, request: Request) -> Response:
        session = authorize(self.service, self.policy, key, request, VIEW)
        params: dict[str, Any] = {"from": query_int(request, "from", 0, 0, 2**31)}
        if (size := query_int(request, "size", None, 0, MAX_LIST_PAGE)) is not None:
            params["size"] = size
        order = request.query_params.get("order")
        if order not in (None, "asc", "desc"):
            raise ApiError(400, f"query parameter 'order' must be asc or desc, got {order!r}")
        if order == "desc":
            params["order"] = "desc"
        return json_bytes(await self.driver_call(session, "GET", "/statements", params=params))

    async def submit(self, key: str, request: Request) -> Response:
        session = authorize(self.service, self.policy, key, request, MODIFY)
        try:
            body = validate_statement_request(await read_json_body(request, self.config.max_body_bytes))
        except RequestError as err:
            raise rejected(err) from None
        raw = await self.driver_call(session, "POST", "/statements", activity=True, body=body)
        statement_id = self.interactive.statement_id(raw)
        return json_bytes(raw, 201, {"Location": f"/sessions/{session.id}/statements/{statement_id}"})

    async def statement(self, key: str, sid: int, request: Request) -> Response:
        """Long-pollable: with ?wait=S the answer comes when the statement's state changes, or after S seconds."""
        session = authorize(self.service, self.policy, key, request, VIEW)
        wait = 0.0
        if (text := request.query_params.get(STATE_WAIT_PARAM)) is not None and (wait := parse_wait(text)) is None:
            raise ApiError(400, WAIT_ERROR.format(text))
        wait = min(wait, self.config.state_wait_max)
        params = {STATE_WAIT_PARAM: f"{wait:g}"} if wait > 0 else None
        return json_bytes(await self.driver_call(session, "GET", f"/statements/{sid}", params=params, wait=wait))

    async def cancel(self, key: str, sid: int, request: Request) -> Response:
        session = authorize(self.service, self.policy, key, request, MODIFY)
        return json_bytes(await self.driver_call(session, "POST", f"/statements/{sid}/cancel", activity=True))

    async def completion(self, key: str, request: Request) -> Response:
        session = authorize(self.service, self.policy, key, request, MODIFY)
        try:
            body = validate_completion_request(await read_json_body(request, self.config.max_body_bytes))
        except RequestError as err:
            raise rejected(err) from None
        return json_bytes(await self.driver_call(session, "POST", "/completion", activity=True, body=body))

    async def driver_ready(self, session_id: int, request: Request) -> JSONResponse:
        """The REPL's call once it listens: authenticated by the session's secret, not by user auth.
        Any refusal makes the driver stop, so a driver nobody owns does not linger."""
        session = self.service.registry.sessions.get(session_id)
        if session is None or not self.interactive.authentic(session, request.headers.get("authorization")):
            raise ApiError(401, "unknown session or wrong secret")
        if not session.active or session.kill_requested:
            raise ApiError(409, f"session {session.id} is {session.state}")
        body = await read_json_body(request, CALLBACK_BODY_LIMIT)
        address = body.get("address") if isinstance(body, dict) else None
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise ApiError(400, "the callback needs the REPL's address as http://host:port")
        text = {k: v if isinstance(v, str) else None for k in ("appId", "sparkUiUrl") if (v := body.get(k)) is not None}
        self.interactive.ready(session, address.rstrip("/"), text.get("appId"), text.get("sparkUiUrl"))
        return JSONResponse({"msg": "ok"})
