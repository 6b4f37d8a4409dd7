"""The HTTP routes: Livy's batch and interactive session APIs, /version, /metrics, the API docs; the web UI
comes from ui.py, the shapes the routes document from schemas.py, request reading and errors from parsing.py,
the access check from access.py.

Batches (/batches) and interactive sessions (/sessions) share their routes for create, list,
view, state, log and delete: one FamilyRoutes per family, its words and paths from the family's
protocol descriptor. Statements, cancel, completion and the REPL drivers' callback are interactive
only (statements.py).

Errors are always JSON `{"msg": ...}` like Livy's. GET /{family}/{id}/state, the call pollers
make most, is a plain Starlette route placed ahead of FastAPI's machinery; FastAPI documents it.
With `?wait=S` it is a long poll: answered at the session's next state change, or after S seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_livy import __version__
from airflow_provider_livy.protocol import DEFAULT_LOG_PAGE, STATE_WAIT_PARAM, TERMINAL_STATES, RequestError
from airflow_provider_livy.server import heap
from airflow_provider_livy.server.api import docs, metrics, statements, ui
from airflow_provider_livy.server.api.access import DELETE, VIEW, authorize, user_of
from airflow_provider_livy.server.api.parsing import WAIT_ERROR, ApiError, error, parse_wait, query_int, read_json_body
from airflow_provider_livy.server.api.schemas import (
    ERROR_SCHEMA,
    KEY_PARAMETER,
    LIVY_API_VERSION,
    LOG_SCHEMA,
    MAX_LIST_PAGE,
    MAX_LOG_PAGE,
    REQUEST_SCHEMAS,
    VERSION_SCHEMA,
    VIEW_SCHEMAS,
    WAIT_PARAMETER,
    body_json,
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
from airflow_provider_livy.server.sessions.capacity import ServerBusy
from airflow_provider_livy.server.sessions.lifecycle import SessionService
from airflow_provider_livy.server.stores.base import StoreUnavailable

log = logging.getLogger(__name__)


def create_app(service: SessionService, sessions: SessionService | None = None) -> FastAPI:
    """The app for the batch service and, when given, the interactive one (`sessions`)."""
    config = service.config
    services = [service] if sessions is None else [service, sessions]

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
    add_error_handlers(app)
    add_server_routes(app, metrics.metrics_registry(*services))
    for each in services:
        FamilyRoutes(each, policy).install(app)
    if sessions is not None:
        statements.StatementRoutes(sessions, policy).install(app)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    docs.install(app)
    ui.install(app, services, policy)
    if needs_middleware(config):
        app.add_middleware(SecurityMiddleware, config=config)
    return app


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


async def api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error(exc.status, exc.message, exc.headers)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error(400, f"Rejected, Reason: {exc.errors()}")


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return error(500, f"internal error: {type(exc).__name__}")


def add_server_routes(app: FastAPI, registry: CollectorRegistry) -> None:
    """/version and /metrics."""

    async def version() -> dict[str, str]:
        """`version` is the Livy release whose API we speak: clients branch on it (pylivy treats anything
        below 0.5.0 as a legacy Livy without sql sessions). Our own release is `serverVersion`."""
        return {"version": LIVY_API_VERSION, "server": "airflow-provider-livy", "serverVersion": __version__}

    async def prometheus_metrics() -> Response:
        return Response(metrics.render(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_api_route(
        "/version",
        version,
        methods=["GET"],
        response_model=None,
        responses={200: {"description": "OK", "content": {"application/json": {"schema": VERSION_SCHEMA}}}},
    )
    app.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        response_class=Response,
        responses={
            200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            401: documented(None)[401],
        },
    )


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description, less the 422 answers it lists: validation errors answer 400 here."""
    if app.openapi_schema is None:
        for operations in FastAPI.openapi(app)["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
    return app.openapi_schema


class FamilyRoutes:
    """Create, list, view, state (long-pollable), log and delete: the same for batches and sessions."""

    def __init__(self, service: SessionService, policy: AccessPolicy) -> None:
        self.service = service
        self.policy = policy
        self.config = service.config
        self.family = service.family.protocol

    def install(self, app: FastAPI) -> None:
        path, name, word = self.family.path, self.family.name, self.family.word
        view = VIEW_SCHEMAS[name]
        body = body_json(REQUEST_SCHEMAS[name])
        one, state = f"{path}/{{key}}", f"{path}/{{key}}/state"
        log_paging = paging_parameters(None, MAX_LOG_PAGE, from_low=None)
        routes: list[tuple[str, Any, str, dict[str, Any]]] = [
            (path, self.create, "POST", {"status_code": 201, "responses": documented(view, 400, 403, 413, 503, ok=201),
                                         "openapi_extra": body}),
            (path, self.list_all, "GET", {"responses": documented(list_schema(view), 400, 403),
                                          "openapi_extra": {"parameters": paging_parameters(0, MAX_LIST_PAGE)}}),
            (one, self.get_one, "GET", {"responses": documented(view, 400, 403, 404)}),
            (state, self.state, "GET", {"summary": f"{word.capitalize()} state (the polling call)",
                                        "responses": documented(state_schema(self.family.states), 400, 403, 404),
                                        "openapi_extra": {"parameters": [KEY_PARAMETER, WAIT_PARAMETER]}}),
            (f"{one}/log", self.log_page, "GET", {"responses": documented(LOG_SCHEMA, 400, 403, 404),
                                                  "openapi_extra": {"parameters": log_paging}}),
            (one, self.delete, "DELETE", {"responses": documented(ERROR_SCHEMA, 400, 403, 404, 503)}),
        ]  # fmt: skip
        for route_path, endpoint, method, extra in routes:
            app.add_api_route(route_path, endpoint, methods=[method], response_model=None, **extra)
        app.router.routes.insert(0, Route(state, self.state, methods=["GET"]))  # the polling call, ahead of FastAPI

    def with_proxy_user(self, body: dict[str, Any], user: str | None) -> dict[str, Any]:
        """The body with the proxyUser the job may run as (see AccessPolicy.proxy_user)."""
        requested = body.get("proxyUser")
        if requested is not None and not isinstance(requested, str):
            return body  # the request validation answers 400 for the wrong type
        try:
            proxy = self.policy.proxy_user(requested, user)
        except ImpersonationDisabled as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        except AccessDenied as err:
            raise ApiError(403, str(err)) from None
        return body if proxy == requested else {**body, "proxyUser": proxy}

    async def create(self, request: Request) -> JSONResponse:
        body = await read_json_body(request, self.config.max_body_bytes)
        user = user_of(request)
        if isinstance(body, dict):
            body = self.with_proxy_user(body, user)
        try:
            session = await self.service.submit(body, user)
        except RequestError as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        except ServerBusy as err:
            raise ApiError(503, str(err), {"Retry-After": str(err.retry_after)}) from None
        except StoreUnavailable as err:
            raise ApiError(503, f"the state store is unavailable, nothing was created: {err}", {"Retry-After": "5"}) from None
        headers = {"Location": f"{self.family.path}/{session.id}"}
        return JSONResponse(self.service.views.view(session), status_code=201, headers=headers)

    async def list_all(self, request: Request) -> dict[str, Any]:
        """With access control on, users who may not view every session see (and count) their own only."""
        start = query_int(request, "from", 0, 0, 2**31) or 0
        size = query_int(request, "size", 100, 0, MAX_LIST_PAGE) or 0
        user, registry = user_of(request), self.service.registry
        if self.policy.sees_all(user):
            page, total = registry.page(start, size), len(registry)
        else:
            own = [s for s in registry.sessions.values() if s.owner == user]
            page, total = own[start : start + size], len(own)
        return {"from": start, "total": total, "sessions": [self.service.views.view(s) for s in page]}

    async def get_one(self, key: str, request: Request) -> dict[str, Any]:
        return dict(self.service.views.view(authorize(self.service, self.policy, key, request, VIEW)))

    async def state(self, request: Request) -> Response:
        try:
            session = authorize(self.service, self.policy, request.path_params["key"], request, VIEW)
        except ApiError as err:
            return error(err.status, err.message)
        if (
            request.scope["query_string"]  # the common poll has none: skip parsing it
            and (wait := request.query_params.get(STATE_WAIT_PARAM)) is not None
            and session.state not in TERMINAL_STATES
        ):
            if (seconds := parse_wait(wait)) is None:
                return error(400, WAIT_ERROR.format(wait))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(seconds, self.config.state_wait_max)):
                    await self.service.registry.changed(session.id).wait()
        return Response(b'{"id":%d,"state":"%s"}' % (session.id, session.state.encode()), media_type="application/json")

    async def log_page(self, key: str, request: Request) -> dict[str, Any]:
        """Livy's paging: a missing or negative `from` means the last `size` lines; a negative `size` means all."""
        session = authorize(self.service, self.policy, key, request, VIEW)
        start = query_int(request, "from", None, None, 2**31)
        size = query_int(request, "size", DEFAULT_LOG_PAGE, None, MAX_LOG_PAGE)
        start = None if start is None or start < 0 else start
        # A thread: the first page of a big finished log counts its lines once (about 0.1 s per 100 MB).
        return await asyncio.to_thread(self.service.views.log_page, session, start, DEFAULT_LOG_PAGE if size is None else size)

    async def delete(self, key: str, request: Request) -> dict[str, str]:
        session = authorize(self.service, self.policy, key, request, DELETE, heartbeat=False)
        try:
            await self.service.delete(session)
        except StoreUnavailable as err:
            message = f"the {self.family.word} was killed but its record could not be removed: {err}"
            raise ApiError(503, message, {"Retry-After": "5"}) from None
        return {"msg": "deleted"}

