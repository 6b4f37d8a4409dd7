"""The HTTP routes: Livy's batch and interactive session APIs, /version, /metrics, the API docs; the web UI
comes from ui.py, the shapes the routes document from schemas.py, request reading and errors from parsing.py.

Batches (/batches) and interactive sessions (/sessions) share their routes for create, list,
view, state, log and delete: one definition serves both families. Statements, cancel, completion
and the REPL drivers' callback are interactive only (server/api/statements.py).

Errors are always JSON `{"msg": ...}` like Livy's. GET /{family}/{id}/state, the call pollers
make most, is a plain Starlette route placed ahead of FastAPI's machinery; FastAPI documents it.
With `?wait=S` it is a long poll: answered at the session's next state change, or after S seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_livy import __version__
from airflow_provider_livy.protocol import (
    BATCH_STATES,
    BATCHES_PATH,
    DEFAULT_LOG_PAGE,
    SESSION_STATES,
    SESSIONS_PATH,
    STATE_WAIT_PARAM,
    TERMINAL_STATES,
    BatchRequestError,
)
from airflow_provider_livy.server import heap
from airflow_provider_livy.server.api import docs, metrics, statements, ui
from airflow_provider_livy.server.api.parsing import (
    WAIT_ERROR,
    ApiError,
    error,
    not_found,
    parse_wait,
    query_int,
    read_json_body,
)
from airflow_provider_livy.server.api.schemas import (
    BATCH_LOG_SCHEMA,
    BATCH_REQUEST_SCHEMA,
    BATCH_VIEW_SCHEMA,
    ERROR_SCHEMA,
    KEY_PARAMETER,
    LIVY_API_VERSION,
    MAX_LIST_PAGE,
    MAX_LOG_PAGE,
    SESSION_REQUEST_SCHEMA,
    SESSION_VIEW_SCHEMA,
    VERSION_SCHEMA,
    WAIT_PARAMETER,
    documented,
    list_schema,
    paging_parameters,
    state_schema,
)
from airflow_provider_livy.server.security import (
    AccessDenied,
    AccessPolicy,
    ImpersonationDisabled,
    SecurityMiddleware,
    needs_middleware,
    startup_warnings,
)
from airflow_provider_livy.server.sessions.lifecycle import ServerBusy, SessionService
from airflow_provider_livy.server.sessions.registry import Batch
from airflow_provider_livy.server.stores.base import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """What the shared routes need to know of one family of sessions."""

    path: str  # /batches or /sessions
    word: str  # batch or session, for messages
    service: SessionService
    view_schema: dict[str, Any]
    request_schema: dict[str, Any]
    states: tuple[str, ...]


def create_app(service: SessionService, sessions: SessionService | None = None) -> FastAPI:
    """The app for the batch service and, when given, the interactive one (`sessions`)."""
    config = service.config
    services = [service] if sessions is None else [service, sessions]
    metrics_registry = metrics.metrics_registry(*services)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for each in services:
            each.start()
        trimming = asyncio.create_task(heap.trim_periodically())
        yield
        trimming.cancel()
        await asyncio.gather(*(each.stop() for each in services))

    app = FastAPI(
        title="airflow-provider-livy server",
        version=__version__,
        description="Apache Livy compatible batch and interactive session API that never hoards finished sessions.",
        lifespan=lifespan,
        docs_url=None,  # docs.py serves /docs and /redoc from local assets
        redoc_url=None,
    )

    policy = AccessPolicy.from_config(config)
    for problem in startup_warnings(config):
        log.warning(problem)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, f"Rejected, Reason: {exc.errors()}")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error(500, f"internal error: {type(exc).__name__}")

    @app.get(
        "/version",
        response_model=None,
        responses={200: {"description": "OK", "content": {"application/json": {"schema": VERSION_SCHEMA}}}},
    )
    async def version() -> dict[str, str]:
        """`version` is the Livy release whose API we speak: clients branch on it (pylivy treats anything
        below 0.5.0 as a legacy Livy without sql sessions). Our own release is `serverVersion`."""
        return {"version": LIVY_API_VERSION, "server": "airflow-provider-livy", "serverVersion": __version__}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            401: documented(None)[401],
        },
    )
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(metrics_registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    add_family_routes(app, Family(BATCHES_PATH, "batch", service, BATCH_VIEW_SCHEMA, BATCH_REQUEST_SCHEMA, BATCH_STATES), policy)
    if sessions is not None:
        family = Family(SESSIONS_PATH, "session", sessions, SESSION_VIEW_SCHEMA, SESSION_REQUEST_SCHEMA, SESSION_STATES)
        add_family_routes(app, family, policy)
        statements.add_statement_routes(app, sessions, policy, family_lookup(family, policy))

    def openapi() -> dict[str, Any]:
        """FastAPI's description, less the 422 answers it lists: validation errors answer 400 here."""
        if app.openapi_schema is None:
            for operations in FastAPI.openapi(app)["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    docs.install(app)
    ui.install(app, services, policy)

    if needs_middleware(config):
        app.add_middleware(SecurityMiddleware, config=config)
    return app


def user_of(request: Request) -> str | None:
    return request.scope.get("state", {}).get("user")


def family_lookup(family: Family, policy: AccessPolicy) -> Callable[[str, Request, bool], Batch]:
    """Find a session by id or name for a caller allowed to view it (or modify it). Every call on a
    session is its client's heartbeat (heartbeatTimeoutInSecond), polling included."""
    interactive = family.service.interactive

    def lookup(key: str, request: Request, modify: bool = False) -> Batch:
        batch = family.service.registry.lookup(key)
        if batch is None:
            raise not_found(key)
        user = user_of(request)
        if modify and not policy.can_modify(user, batch.owner):
            raise ApiError(403, f"User '{user}' is not allowed to modify {family.word} {batch.id}.")
        if not modify and not policy.can_view(user, batch.owner):
            raise ApiError(403, f"User '{user}' is not allowed to view {family.word} {batch.id}.")
        if interactive is not None:
            interactive.heartbeat(batch)
        return batch

    return lookup


def add_family_routes(app: FastAPI, family: Family, policy: AccessPolicy) -> None:
    """Create, list, view, state (long-pollable), log and delete: the same for batches and sessions."""
    service, path, word = family.service, family.path, family.word
    config = service.config
    lookup = family_lookup(family, policy)
    interactive = service.interactive

    def with_proxy_user(body: dict[str, Any], user: str | None) -> dict[str, Any]:
        """The body with the proxyUser the job may run as (see AccessPolicy.proxy_user)."""
        requested = body.get("proxyUser")
        if requested is not None and not isinstance(requested, str):
            return body  # the request validation answers 400 for the wrong type
        try:
            proxy = policy.proxy_user(requested, user)
        except ImpersonationDisabled as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        except AccessDenied as err:
            raise ApiError(403, str(err)) from None
        return body if proxy == requested else {**body, "proxyUser": proxy}

    async def create(request: Request) -> JSONResponse:
        body = await read_json_body(request, config.max_body_bytes)
        user = user_of(request)
        if isinstance(body, dict):
            body = with_proxy_user(body, user)
        try:
            batch = await service.submit(body, user)
        except BatchRequestError as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        except ServerBusy as err:
            raise ApiError(503, str(err), {"Retry-After": str(err.retry_after)}) from None
        except StoreUnavailable as err:
            raise ApiError(503, f"the state store is unavailable, nothing was created: {err}", {"Retry-After": "5"}) from None
        return JSONResponse(service.view(batch), status_code=201, headers={"Location": f"{path}/{batch.id}"})

    app.add_api_route(
        path,
        create,
        methods=["POST"],
        status_code=201,
        response_model=None,
        responses=documented(family.view_schema, 400, 403, 413, 503, ok=201),
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": family.request_schema}}}},
    )

    async def list_all(request: Request) -> dict[str, Any]:
        """With access control on, users who may not view every session see (and count) their own only."""
        start = query_int(request, "from", 0, 0, 2**31) or 0
        size = query_int(request, "size", 100, 0, MAX_LIST_PAGE) or 0
        user = user_of(request)
        if policy.sees_all(user):
            page, total = service.registry.page(start, size), len(service.registry)
        else:
            own = [b for b in service.registry.batches.values() if b.owner == user]
            page, total = own[start : start + size], len(own)
        return {"from": start, "total": total, "sessions": [service.view(b) for b in page]}

    app.add_api_route(
        path,
        list_all,
        methods=["GET"],
        response_model=None,
        responses=documented(list_schema(family.view_schema), 400, 403),
        openapi_extra={"parameters": paging_parameters(0, MAX_LIST_PAGE)},
    )

    async def get_one(key: str, request: Request) -> dict[str, Any]:
        return dict(service.view(lookup(key, request)))

    app.add_api_route(
        f"{path}/{{key}}", get_one, methods=["GET"], response_model=None, responses=documented(family.view_schema, 400, 403, 404)
    )

    async def state(request: Request) -> Response:
        key = request.path_params["key"]
        batch = service.registry.lookup(key)
        if batch is None:
            return error(404, f"Session '{key}' not found.")
        if policy.enabled and not policy.can_view(user := user_of(request), batch.owner):
            return error(403, f"User '{user}' is not allowed to view {word} {batch.id}.")
        if interactive is not None:
            interactive.heartbeat(batch)
        if (
            request.scope["query_string"]  # the common poll has none: skip parsing it
            and (wait := request.query_params.get(STATE_WAIT_PARAM)) is not None
            and batch.state not in TERMINAL_STATES
        ):
            if (seconds := parse_wait(wait)) is None:
                return error(400, WAIT_ERROR.format(wait))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(seconds, config.state_wait_max)):
                    await service.registry.changed(batch.id).wait()
        return Response(b'{"id":%d,"state":"%s"}' % (batch.id, batch.state.encode()), media_type="application/json")

    app.add_api_route(
        f"{path}/{{key}}/state",
        state,
        methods=["GET"],
        summary=f"{word.capitalize()} state (the polling call)",
        response_model=None,
        responses=documented(state_schema(family.states), 400, 403, 404),
        openapi_extra={"parameters": [KEY_PARAMETER, WAIT_PARAMETER]},
    )
    app.router.routes.insert(0, Route(f"{path}/{{key}}/state", state, methods=["GET"]))

    async def log_page(key: str, request: Request) -> dict[str, Any]:
        """Livy's paging: a missing or negative `from` means the last `size` lines; a negative `size` means all."""
        batch = lookup(key, request)
        start = query_int(request, "from", None, None, 2**31)
        size = query_int(request, "size", DEFAULT_LOG_PAGE, None, MAX_LOG_PAGE)
        start = None if start is None or start < 0 else start
        # A thread: the first page of a big finished log counts its lines once (about 0.1 s per 100 MB).
        return await asyncio.to_thread(service.log_page, batch, start, DEFAULT_LOG_PAGE if size is None else size)

    app.add_api_route(
        f"{path}/{{key}}/log",
        log_page,
        methods=["GET"],
        response_model=None,
        responses=documented(BATCH_LOG_SCHEMA, 400, 403, 404),
        openapi_extra={"parameters": paging_parameters(None, MAX_LOG_PAGE, from_low=None)},
    )

    async def delete(key: str, request: Request) -> dict[str, str]:
        batch = service.registry.lookup(key)
        if batch is None:
            raise not_found(key)
        user = user_of(request)
        if not policy.can_modify(user, batch.owner):
            raise ApiError(403, f"User '{user}' is not allowed to delete {word} {batch.id}.")
        try:
            await service.delete(batch)
        except StoreUnavailable as err:
            raise ApiError(
                503, f"the {word} was killed but its record could not be removed: {err}", {"Retry-After": "5"}
            ) from None
        return {"msg": "deleted"}

    app.add_api_route(
        f"{path}/{{key}}",
        delete,
        methods=["DELETE"],
        response_model=None,
        responses=documented(ERROR_SCHEMA, 400, 403, 404, 503),
    )
