"""The driver's HTTP API, which the server calls (see the package docstring): routes, auth, bounds."""

from __future__ import annotations

import hmac
import json
import math
import socket
import threading
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .errors import RequestError
from .log import log
from .repl import Repl
from .settings import Settings

MAX_WAIT_S = 300.0
MAX_BODY_BYTES = 16 * 1024 * 1024


def _number(
    query: dict[str, list[str]], name: str, default: Any, *, kind: type = float, low: float = 0, high: float = MAX_WAIT_S
) -> Any:
    if name not in query:
        return default
    raw = query[name][-1]
    try:
        value = kind(raw)
    except ValueError:
        raise RequestError(400, f"{name} must be a number, not {raw!r}") from None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        raise RequestError(400, f"{name} must be between {low} and {high}")
    return value


class Handler(BaseHTTPRequestHandler):
    """The driver's HTTP API (one thread per connection; keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "livy-repl"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = MAX_WAIT_S + 60  # a keep-alive connection whose peer vanished does not hold a thread forever
    repl: Repl
    expected: bytes

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the server polls often, and the log is the user's."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        given = self.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self.expected):
            self.close_connection = True  # the body, if any, is not read
            self._send(401, {"msg": "missing or wrong Authorization: Bearer <secret>"})
            return
        self.repl.idle.touch(started=True)
        after = None
        try:
            status, body, after = self._route(method)
        except RequestError as err:
            status, body = err.status, {"msg": err.message}
        except Exception as exc:
            log(f"error answering {method} {self.path}: {traceback.format_exc()}")
            status, body = 500, {"msg": f"internal error in the REPL driver: {type(exc).__name__}"}
        finally:
            self.repl.idle.touch(started=False)
        self._send(status, body)
        if after is not None:
            after()

    def _body(self) -> dict[str, Any]:
        """The JSON object sent (read whatever the method, so a keep-alive connection stays in step)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError(400, "Content-Length must be a number of bytes")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise RequestError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def _route(self, method: str) -> tuple[int, Any, Any]:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [part for part in url.path.split("/") if part]
        repl = self.repl
        body = self._body()
        if parts == ["status"] and method == "GET":
            version = _number(query, "version", None, kind=int, low=-1, high=2**63)
            return 200, repl.status(_number(query, "wait", 0.0), version), None
        if parts == ["statements"] and method == "GET":
            start = _number(query, "from", 0, kind=int, high=2**31)
            size = _number(query, "size", None, kind=int, high=2**31)
            order = query.get("order", ["asc"])[-1]
            if order not in ("asc", "desc"):
                raise RequestError(400, "order must be asc or desc")
            return 200, repl.list_statements(start, size, order == "desc"), None
        if parts == ["statements"] and method == "POST":
            code = body.get("code")
            if not isinstance(code, str):
                raise RequestError(400, "code must be a string")
            return 201, repl.submit(code, body.get("kind")), None
        if len(parts) == 2 and parts[0] == "statements" and method == "GET":
            return 200, repl.wait_statement(_statement_id(parts[1]), _number(query, "wait", 0.0)), None
        if len(parts) == 3 and parts[0] == "statements" and parts[2] == "cancel" and method == "POST":
            repl.cancel(_statement_id(parts[1]))
            return 200, {"msg": "canceled"}, None
        if parts == ["completion"] and method == "POST":
            code, cursor = body.get("code", ""), body.get("cursor")
            if not isinstance(code, str):
                raise RequestError(400, "code must be a string")
            if cursor is None:
                cursor = len(code)
            if not isinstance(cursor, int) or isinstance(cursor, bool) or not 0 <= cursor <= len(code):
                raise RequestError(400, "cursor must be a position in code")
            return 200, {"candidates": repl.complete(code, cursor, body.get("kind"))}, None
        if parts == ["shutdown"] and method == "POST":
            return 200, {"msg": "shutting down"}, lambda: repl.request_stop("shutdown requested")
        if parts in (["status"], ["statements"], ["completion"], ["shutdown"]) or (parts and parts[0] == "statements"):
            raise RequestError(405, f"{method} is not allowed on {url.path}")
        raise RequestError(404, f"no such path: {url.path}")

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


def _statement_id(raw: str) -> int:
    if not raw.isdigit():
        raise RequestError(404, f"statement {raw!r} not found")
    return int(raw)


def serve(repl: Repl, settings: Settings) -> ThreadingHTTPServer:
    """Listen on an ephemeral port of LIVY_REPL_BIND, in background threads."""
    handler = type("BoundHandler", (Handler,), {"repl": repl, "expected": f"Bearer {settings.secret}".encode()})
    family = socket.AF_INET6 if ":" in settings.bind else socket.AF_INET
    server_class = type(
        "Server", (ThreadingHTTPServer,), {"address_family": family, "request_queue_size": 64, "daemon_threads": True}
    )
    server = server_class((settings.bind, 0), handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
