"""Authentication and CSRF protection, as one plain ASGI middleware.

A plain ASGI callable rather than Starlette's BaseHTTPMiddleware: the polling endpoint is hot,
and with both features off the middleware is not installed at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import bcrypt

from airflow_provider_livy.protocol import CSRF_HEADER
from airflow_provider_livy.server.config import ConfigError, ServerConfig

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/version"})
CSRF_METHODS = frozenset({"POST", "DELETE", "PUT", "PATCH"})


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def read_users_file(path: str) -> dict[str, bytes]:
    """`user:bcrypt-hash` lines (htpasswd's bcrypt form); `#` comments."""
    users: dict[str, bytes] = {}
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read users file {path}: {err}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith("$2"):
            raise ConfigError(f"{path}:{number}: expected user:bcrypt-hash")
        users[user] = hashed.encode()
    return users


class Authenticator:
    """Checks HTTP basic credentials. bcrypt is slow by design, so a verified pair is remembered."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._verified: set[tuple[str, bytes]] = set()

    def user_for(self, header: bytes | None) -> str | None:
        if not header or not header.lower().startswith(b"basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        key = (user, hashlib.sha256(password.encode()).digest())
        if key in self._verified:
            return user
        hashed = self.users.get(user)
        if hashed is None or not bcrypt.checkpw(password.encode(), hashed):
            return None
        self._verified.add(key)
        return user


async def _reply(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = json.dumps({"msg": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.app = app
        self.csrf = config.csrf_protection
        self.auth = Authenticator(read_users_file(config.auth_users_file)) if config.auth_type == "basic" else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.auth is not None and scope["path"] not in OPEN_PATHS:
            user = self.auth.user_for(headers.get(b"authorization"))
            if user is None:
                await _reply(send, 401, "Authentication required", [(b"www-authenticate", b'Basic realm="livy"')])
                return
            scope.setdefault("state", {})["user"] = user
        if self.csrf and scope["method"] in CSRF_METHODS and CSRF_HEADER.lower().encode() not in headers:
            await _reply(send, 400, "Missing Required Header for CSRF protection.")
            return
        await self.app(scope, receive, send)


def needs_middleware(config: ServerConfig) -> bool:
    return config.csrf_protection or config.auth_type != "none"
