"""The driver's settings, read from the LIVY_REPL_* environment the server sets (see the package docstring)."""

from __future__ import annotations

import urllib.parse

from .errors import RequestError
from .kinds import resolve_session_kind


class Settings:
    """The driver's settings, from the environment the server set."""

    def __init__(self, env: dict[str, str]) -> None:
        self.secret = env.get("LIVY_REPL_SECRET", "")
        self.callback = env.get("LIVY_REPL_CALLBACK", "")
        self.kind = env.get("LIVY_REPL_KIND", "pyspark")
        self.bind = env.get("LIVY_REPL_BIND", "127.0.0.1")
        try:
            self.idle_timeout = float(env.get("LIVY_REPL_IDLE_TIMEOUT", "600"))
            self.retained = int(env.get("LIVY_REPL_RETAINED", "100"))
            self.max_output = int(env.get("LIVY_REPL_MAX_OUTPUT", str(1024 * 1024)))
            self.sql_rows = int(env.get("LIVY_REPL_SQL_ROWS", "1000"))
        except ValueError as err:
            raise SystemExit(f"livy-repl: a LIVY_REPL_ number setting is not a number: {err}") from None
        self.no_spark = env.get("LIVY_REPL_NO_SPARK") == "1"
        if self.callback and urllib.parse.urlsplit(self.callback).scheme not in ("http", "https"):
            raise SystemExit("livy-repl: LIVY_REPL_CALLBACK must be an http(s) URL")
        try:
            resolve_session_kind(self.kind)
        except RequestError as err:
            raise SystemExit(f"livy-repl: LIVY_REPL_KIND: {err.message}") from None
        if not self.secret:
            raise SystemExit("livy-repl: LIVY_REPL_SECRET is not set; refusing to serve without authentication")
        if self.retained < 1 or self.max_output < 256 or self.sql_rows < 0 or self.idle_timeout <= 0:
            raise SystemExit("livy-repl: LIVY_REPL_RETAINED, _MAX_OUTPUT, _SQL_ROWS or _IDLE_TIMEOUT out of range")
