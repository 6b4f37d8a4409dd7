"""Reading a request (query parameters, a long poll's wait, a JSON body) and answering Livy's way:
every error is JSON `{"msg": ...}`, raised as ApiError wherever a route finds it.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_provider_livy.protocol import STATE_WAIT_PARAM


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"msg": message}, status_code=status, headers=headers)


def not_found(key: str) -> ApiError:
    return ApiError(404, f"Session '{key}' not found.")


WAIT_ERROR = f"query parameter '{STATE_WAIT_PARAM}' must be a number of seconds >= 0, got {{!r}}"


def parse_wait(text: str) -> float | None:
    """A long poll's ?wait=S: seconds >= 0; None for anything else (a 400)."""
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def query_int(
    request: Request, name: str, default: int | None, low: int | None, high: int, *, blank_is_default: bool = False
) -> int | None:
    """A whole-number query parameter within [low, high] (no low: any below high); ApiError 400 otherwise.
    `blank_is_default`: `?from=` means not set (the UI's forms send empty fields)."""
    text = request.query_params.get(name)
    if text is None or (blank_is_default and text == ""):
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
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, a number over 4,300 digits, deep nesting
        raise ApiError(400, f"Rejected, Reason: the body is not valid JSON: {str(err)[:200]}") from None
