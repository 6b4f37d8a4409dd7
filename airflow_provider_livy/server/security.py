"""Authentication, access control, impersonation and CSRF protection.

Authentication and CSRF run in one plain ASGI middleware rather than Starlette's
BaseHTTPMiddleware: the polling endpoint is hot, and with every feature off the middleware is
not installed at all. Access control follows Livy's AccessManager: the owner of a batch, view
users, modify users and superusers; its checks are set lookups, cheap enough for the poll path.

Users files are made with `python -m airflow_provider_livy.server.security add-user FILE USER`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import getpass
import hashlib
import json
import logging
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from airflow_provider_livy.protocol import CSRF_HEADER
from airflow_provider_livy.server.config import ConfigError, ServerConfig

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/version"})
# The REPL drivers' callback: authenticated by each session's own secret (checked by the route), not by users.
DRIVER_CALLBACK_PREFIX = "/internal/repl/"
CSRF_METHODS = frozenset({"POST", "DELETE", "PUT", "PATCH"})
WILDCARD = "*"


class AccessDenied(PermissionError):
    """The caller may not do this (403)."""


class ImpersonationDisabled(ValueError):
    """A proxyUser was asked for, but this server does not impersonate (400)."""


def hash_password(password: str) -> str:
    import bcrypt  # here and in Authenticator: only servers with basic auth pay for it at start-up

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


def add_user(path: str, user: str, password: str) -> None:
    """Add or replace one user in a users file, atomically, readable by its owner only."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ConfigError(f"user name {user!r} must be non-empty, without ':' or spaces")
    if not password:
        raise ConfigError("the password must not be empty")
    target = Path(path)
    lines = target.read_text().splitlines() if target.exists() else []
    kept = [line for line in lines if line.strip().partition(":")[0] != user]
    kept.append(f"{user}:{hash_password(password)}")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(kept) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def parse_basic(header: bytes | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith(b"basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class Authenticator:
    """Checks HTTP basic credentials. bcrypt is slow by design: it runs off the event loop, and a
    verified pair is remembered (as a digest) so each client pays for it once."""

    def __init__(self, users: dict[str, bytes]) -> None:
        import bcrypt

        self._bcrypt = bcrypt
        self.users = users
        # Checked against when the user is unknown, so a wrong user name costs as long as a wrong password.
        self._dummy_hash = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))
        self._verified: set[tuple[str, bytes]] = set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bcrypt")

    @staticmethod
    def _key(user: str, password: str) -> tuple[str, bytes]:
        return user, hashlib.sha256(password.encode()).digest()

    def known(self, user: str, password: str) -> bool:
        return self._key(user, password) in self._verified

    def verify(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        ok = self._bcrypt.checkpw(password.encode(), hashed or self._dummy_hash) and hashed is not None
        if ok:
            self._verified.add(self._key(user, password))
        return ok

    async def user_for(self, header: bytes | None) -> str | None:
        credentials = parse_basic(header)
        if credentials is None:
            return None
        if self.known(*credentials):
            return credentials[0]
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, self.verify, *credentials)
        return credentials[0] if ok else None


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    """Livy's AccessManager semantics. A request without a user (no authentication) passes every check."""

    enabled: bool = False
    superusers: frozenset[str] = frozenset()
    viewers: frozenset[str] = frozenset()  # superusers + modify users + view users
    modifiers: frozenset[str] = frozenset()  # superusers + modify users
    allowed: frozenset[str] = frozenset({WILDCARD})  # all of the above + allowed users
    impersonation: bool = False
    impersonators: frozenset[str] = frozenset()  # superusers + allowed impersonators

    @classmethod
    def from_config(cls, config: ServerConfig) -> AccessPolicy:
        supers = frozenset(config.superusers)
        modifiers = supers | frozenset(config.modify_users)
        viewers = modifiers | frozenset(config.view_users)
        return cls(
            enabled=config.access_control,
            superusers=supers,
            viewers=viewers,
            modifiers=modifiers,
            allowed=viewers | frozenset(config.allowed_users),
            impersonation=config.impersonation,
            impersonators=supers | frozenset(config.allowed_impersonators),
        )

    def is_allowed(self, user: str | None) -> bool:
        return not self.enabled or user is None or WILDCARD in self.allowed or user in self.allowed

    def sees_all(self, user: str | None) -> bool:
        return not self.enabled or user is None or WILDCARD in self.viewers or user in self.viewers

    def can_view(self, user: str | None, owner: str | None) -> bool:
        return user == owner or self.sees_all(user)

    def can_modify(self, user: str | None, owner: str | None) -> bool:
        return not self.enabled or user is None or user == owner or WILDCARD in self.modifiers or user in self.modifiers

    def proxy_user(self, requested: str | None, user: str | None) -> str | None:
        """Who the job runs as: the requested proxyUser if the caller may impersonate them, else (with
        impersonation on) the caller, as Livy does. Raises ImpersonationDisabled or AccessDenied."""
        if not self.impersonation:
            if requested:
                raise ImpersonationDisabled(
                    f"proxyUser {requested!r} refused: impersonation is disabled on this server (livy.impersonation.enabled)"
                )
            return None
        if not requested:
            return user
        if user is None or requested == user or WILDCARD in self.impersonators or user in self.impersonators:
            return requested
        raise AccessDenied(f"User '{user}' is not allowed to impersonate '{requested}'.")


def startup_warnings(config: ServerConfig) -> list[str]:
    """Settings that look protective but are not, said out loud at start-up."""
    problems = []
    if config.auth_type == "none" and (config.access_control or config.impersonation):
        problems.append(
            "access control and impersonation need livy.server.auth.type = basic: without it every request "
            "is anonymous and passes every check"
        )
    return problems


async def _reply(send: Any, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
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
    """Authenticates, refuses users outside livy.server.access-control.allowed-users, checks CSRF.
    The user lands in scope["state"]["user"] (request.state.user) for the routes' checks."""

    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.app = app
        self.csrf = config.csrf_protection
        self.auth = Authenticator(read_users_file(config.auth_users_file)) if config.auth_type == "basic" else None
        self.policy = AccessPolicy.from_config(config)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(DRIVER_CALLBACK_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.auth is not None and scope["path"] not in OPEN_PATHS:
            user = await self.auth.user_for(headers.get(b"authorization"))
            if user is None:
                await _reply(send, 401, "Authentication required", ((b"www-authenticate", b'Basic realm="livy"'),))
                return
            if not self.policy.is_allowed(user):
                await _reply(send, 403, f"User '{user}' is not allowed to use this server.")
                return
            scope.setdefault("state", {})["user"] = user
        if self.csrf and scope["method"] in CSRF_METHODS and CSRF_HEADER.lower().encode() not in headers:
            await _reply(send, 400, "Missing Required Header for CSRF protection.")
            return
        await self.app(scope, receive, send)


def needs_middleware(config: ServerConfig) -> bool:
    return config.csrf_protection or config.auth_type != "none"


def main(argv: list[str] | None = None) -> int:
    """`add-user FILE USER`: asks for the password (or reads one line from stdin with --password-stdin)."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_livy.server.security", description="Manage the basic-auth users file."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add-user", help="add a user, or replace its password")
    add.add_argument("file", help="the file named by livy.server.auth.basic.users-file")
    add.add_argument("user")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    args = parser.parse_args(argv)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ; nothing written", file=sys.stderr)
            return 1
    try:
        add_user(args.file, args.user, password)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.user} written to {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
