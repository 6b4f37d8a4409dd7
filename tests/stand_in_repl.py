"""One stand-in REPL for many sessions, for load tests and benchmarks that need hundreds of idle sessions.

With `livy.server.spark-home` = tests/stand_in_spark_home, each session's "driver" is a real process that the
server watches and kills (a sleep), which calls the server back with the address of the stand-in served here.
The server then follows it as a real driver: /status after the callback, keep-alive pings, /shutdown at the end.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STAND_IN_SPARK_HOME = Path(__file__).resolve().parent / "stand_in_spark_home"


class StandInRepl(BaseHTTPRequestHandler):
    """The same answer for every session: idle, nothing run."""

    protocol_version = "HTTP/1.1"
    started_ms = int(time.time() * 1000)

    def _answer(self, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        statements = {"run": 0, "failed": 0, "cancelled": 0}
        self._answer({"state": "idle", "version": 0, "lastActivity": self.started_ms, "statements": statements})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({"msg": "ok"})

    def log_message(self, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """The server under test drops its pooled connections when it stops: not worth a traceback."""


@contextmanager
def stand_in_repl() -> Iterator[str]:
    """Serve the stand-in REPL; servers started inside the block pass its address to their drivers."""
    server = QuietServer(("127.0.0.1", 0), StandInRepl)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    os.environ["STAND_IN_REPL_ADDRESS"] = address
    try:
        yield address
    finally:
        os.environ.pop("STAND_IN_REPL_ADDRESS", None)
        server.shutdown()
