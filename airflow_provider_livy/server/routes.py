"""The HTTP routes: Livy's batch API, /version, /metrics.

Errors are always JSON `{"msg": ...}` like Livy's. GET /batches/{id}/state, the call pollers
make most, is a plain Starlette route placed ahead of FastAPI's machinery; FastAPI documents it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_livy import __version__
from airflow_provider_livy.protocol import (
    BATCH_REQUEST_FIELDS,
    DEFAULT_LOG_PAGE,
    INT,
    STR,
    STR_LIST,
    BatchRequestError,
)
from airflow_provider_livy.server import metrics
from airflow_provider_livy.server.lifecycle import BatchService, ServerBusy
from airflow_provider_livy.server.registry import Batch
from airflow_provider_livy.server.security import SecurityMiddleware, needs_middleware
from airflow_provider_livy.server.store import StoreUnavailable

log = logging.getLogger(__name__)

MAX_LIST_PAGE = 10_000
MAX_LOG_PAGE = 1_000_000
_JSON_TYPES = {
    STR: {"type": "string"},
    INT: {"type": "integer", "minimum": 1},
    STR_LIST: {"type": "array", "items": {"type": "string"}},
}
BATCH_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,
    "properties": {
        field: _JSON_TYPES.get(kind, {"type": "object", "additionalProperties": {"type": "string"}})
        for field, kind in BATCH_REQUEST_FIELDS.items()
    },
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"msg": message}, status_code=status, headers=headers)


def not_found(key: str) -> ApiError:
    return ApiError(404, f"Session '{key}' not found.")


def query_int(request: Request, name: str, default: int | None, low: int | None, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"query parameter '{name}' must be a whole number, got {text!r}") from None
    if (low is not None and value < low) or value > high:
        raise ApiError(400, f"query parameter '{name}' must be between {low} and {high}, got {value}")
    return value


async def read_json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise ApiError(400, f"Rejected, Reason: expected a JSON body (Content-Type application/json), got {content_type}")
    try:
        return json.loads(b"".join(chunks) or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"Rejected, Reason: the body is not valid JSON: {err}") from None


def create_app(service: BatchService) -> FastAPI:
    config = service.config
    metrics_registry = metrics.metrics_registry(service)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await service.stop()

    app = FastAPI(
        title="airflow-provider-livy server",
        version=__version__,
        description="Apache Livy compatible batch API that runs spark-submit and never hoards finished sessions.",
        lifespan=lifespan,
    )

    def lookup(key: str) -> Batch:
        batch = service.registry.lookup(key)
        if batch is None:
            raise not_found(key)
        return batch

    def owner_of(request: Request) -> str | None:
        return getattr(request.state, "user", None)

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

    @app.get("/version")
    async def version() -> dict[str, str]:
        return {"version": __version__, "livyApi": "0.8", "server": "airflow-provider-livy"}

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(metrics_registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post(
        "/batches",
        status_code=201,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BATCH_REQUEST_SCHEMA}}}},
    )
    async def create_batch(request: Request) -> JSONResponse:
        body = await read_json_body(request, config.max_body_bytes)
        try:
            batch = await service.submit(body, owner_of(request))
        except BatchRequestError as err:
            raise ApiError(400, f"Rejected, Reason: {err}") from None
        except ServerBusy as err:
            raise ApiError(503, str(err), {"Retry-After": str(err.retry_after)}) from None
        except StoreUnavailable as err:
            raise ApiError(503, f"the state store is unavailable, nothing was created: {err}", {"Retry-After": "5"}) from None
        return JSONResponse(service.view(batch), status_code=201, headers={"Location": f"/batches/{batch.id}"})

    @app.get("/batches")
    async def list_batches(request: Request) -> dict[str, Any]:
        start = query_int(request, "from", 0, 0, 2**31)
        size = query_int(request, "size", 100, 0, MAX_LIST_PAGE)
        page = service.registry.page(start or 0, size or 0)
        return {"from": start, "total": len(service.registry), "sessions": [service.view(b) for b in page]}

    @app.get("/batches/{key}")
    async def get_batch(key: str) -> dict[str, Any]:
        return dict(service.view(lookup(key)))

    async def batch_state(request: Request) -> Response:
        key = request.path_params["key"]
        batch = service.registry.lookup(key)
        if batch is None:
            return error(404, f"Session '{key}' not found.")
        return Response(b'{"id":%d,"state":"%s"}' % (batch.id, batch.state.encode()), media_type="application/json")

    app.add_api_route("/batches/{key}/state", batch_state, methods=["GET"], summary="Batch state (the polling call)")
    app.router.routes.insert(0, Route("/batches/{key}/state", batch_state, methods=["GET"]))

    @app.get("/batches/{key}/log")
    async def batch_log(key: str, request: Request) -> dict[str, Any]:
        batch = lookup(key)
        start = query_int(request, "from", None, 0, 2**31)
        size = query_int(request, "size", DEFAULT_LOG_PAGE, None, MAX_LOG_PAGE)
        return service.log_page(batch, start, DEFAULT_LOG_PAGE if size is None else size)

    @app.delete("/batches/{key}")
    async def delete_batch(key: str) -> dict[str, str]:
        batch = lookup(key)
        try:
            await service.delete(batch)
        except StoreUnavailable as err:
            raise ApiError(
                503, f"the batch was killed but its record could not be removed: {err}", {"Retry-After": "5"}
            ) from None
        return {"msg": "deleted"}

    if needs_middleware(config):
        app.add_middleware(SecurityMiddleware, config=config)
    return app
