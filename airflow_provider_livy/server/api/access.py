"""Who may act on a session: the one step every route on a session (and the UI's page) takes first.

Find the session by id or name, then check the caller may view or modify it (AccessPolicy); a 404
or 403 otherwise, as Livy answers. Every call on an interactive session is also its client's
heartbeat (heartbeatTimeoutInSecond), polling included.
"""

from __future__ import annotations

from starlette.requests import Request

from airflow_provider_livy.server.api.parsing import ApiError, not_found
from airflow_provider_livy.server.security import AccessPolicy
from airflow_provider_livy.server.sessions.lifecycle import SessionService
from airflow_provider_livy.server.sessions.model import Session

VIEW, MODIFY, DELETE = "view", "modify", "delete"  # what the caller wants to do, as the 403 says it


def user_of(request: Request) -> str | None:
    """The authenticated user the security middleware put in the request's scope (None: no auth)."""
    return request.scope.get("state", {}).get("user")


def authorize(
    service: SessionService, policy: AccessPolicy, key: str, request: Request, action: str, *, heartbeat: bool = True
) -> Session:
    """The session `key` names, if the caller may `action` it; ApiError 404 or 403 otherwise."""
    session = service.registry.lookup(key)
    if session is None:
        raise not_found(key)
    if policy.enabled:  # (the polling call's path: no more work than this without access control)
        user = user_of(request)
        allowed = policy.can_view(user, session.owner) if action == VIEW else policy.can_modify(user, session.owner)
        if not allowed:
            raise ApiError(403, f"User '{user}' is not allowed to {action} {service.family.protocol.word} {session.id}.")
    if heartbeat:
        service.family.heartbeat(session)
    return session
