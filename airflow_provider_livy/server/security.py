"""Authentication, access control, impersonation and CSRF protection.

Authentication (the sign-in gate of `server/auth/`, whatever livy.server.auth.type) and CSRF run in one
plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: the polling endpoint is hot, and with
every feature off the middleware is not installed at all. Access control follows Livy's AccessManager: the
owner of a batch, view users, modify users and superusers; its checks are set lookups, cheap enough for
the poll path, and the same for every sign-in type.

Users files for basic sign-in are made with `python -m airflow_provider_livy.server.security add-user FILE USER`.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import sys
from typing import Any

from airflow_provider_livy.protocol import CSRF_HEADER
from airflow_provider_livy.server.asgi_answers import answer_json
from airflow_provider_livy.server.auth import build_gate
from airflow_provider_livy.server.auth.basic import add_user
from airflow_provider_livy.server.auth.refusal import Refused
from airflow_provider_livy.server.config import ConfigError, ServerConfig

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/version", "/ready"})
# The REPL drivers' callback: authenticated by each session's own secret (checked by the route), not by users.
DRIVER_CALLBACK_PREFIX = "/internal/repl/"
CSRF_METHODS = frozenset({"POST", "DELETE", "PUT", "PATCH"})
WILDCARD = "*"


class AccessDenied(PermissionError):
    """The caller may not do this (403)."""


class ImpersonationDisabled(ValueError):
    """A proxyUser was asked for, but this server does not impersonate (400)."""


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
            "access control and impersonation need livy.server.auth.type = basic, kerberos or ldap: without it every request "
            "is anonymous and passes every check"
        )
    return problems


def _with_headers(send: Any, extra: tuple[tuple[bytes, bytes], ...]) -> Any:
    """`send`, adding the sign-in's reply headers (mutual-auth token, cookie) to the response start."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return sending


class SecurityMiddleware:
    """Signs the caller in, refuses users outside livy.server.access-control.allowed-users, checks CSRF.
    The user lands in scope["state"]["user"] (request.state.user) for the routes' checks."""

    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.app = app
        self.csrf = config.csrf_protection
        self.gate = build_gate(config)
        self.policy = AccessPolicy.from_config(config)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(DRIVER_CALLBACK_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.gate is not None and scope["path"] not in OPEN_PATHS:
            client = (scope.get("client") or ("unknown",))[0]
            try:
                user, extra = await self.gate.sign_in(headers.get(b"authorization"), headers.get(b"cookie"), client)
            except Refused as refusal:
                await answer_json(send, refusal.status, {"msg": refusal.msg}, refusal.headers)
                return
            if not self.policy.is_allowed(user):
                await answer_json(send, 403, {"msg": f"User '{user}' is not allowed to use this server."})
                return
            scope.setdefault("state", {})["user"] = user
            if extra:
                send = _with_headers(send, extra)
        if self.csrf and scope["method"] in CSRF_METHODS and CSRF_HEADER.lower().encode() not in headers:
            await answer_json(send, 400, {"msg": "Missing Required Header for CSRF protection."})
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
