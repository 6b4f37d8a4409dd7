"""What a client sees of a session: Livy's view (with its family's fields), its log pages, and when the
server will let go of it (`expiresAt`). Read from memory and the log file; nothing here changes a session."""

from __future__ import annotations

from typing import Any

from airflow_provider_livy.server.drivers import logs
from airflow_provider_livy.server.sessions.families import ServerFamily
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.sessions.registry import Registry

VIEW_LOG_LINES = 10


class Views:
    def __init__(self, family: ServerFamily, registry: Registry, files: logs.SessionFiles) -> None:
        self.family = family
        self.registry = registry
        self.files = files

    def recent_log(self, session: Session, count: int = VIEW_LOG_LINES) -> list[str]:
        if session.tail is not None:
            return list(session.tail)[-count:]
        return logs.tail_lines(self.files.log(session.id), count)

    def expires_at(self, session: Session) -> float | None:
        """When the server lets go: a finished session is forgotten, an active one's clock ends it (sessions)."""
        return self.family.ends_at(session) if session.active else self.registry.expires_at(session)

    def view(self, session: Session) -> dict[str, Any]:
        base = {
            "id": session.id,
            "name": session.name,
            "owner": session.owner,
            "proxyUser": session.proxy_user,
            "state": session.state,
            "appId": session.app_id,
            "appInfo": {"driverLogUrl": session.driver_log_url, "sparkUiUrl": session.ui_url, "executorLogUrls": None},
            "log": self.recent_log(session),
            "createdAt": session.created_at,
            "finishedAt": session.finished_at,
            "expiresAt": self.expires_at(session),
        }
        return self.family.view(session, base)

    def log_page(self, session: Session, start: int | None, size: int) -> dict[str, Any]:
        """Livy's semantics: no `from` means the last `size` lines; a negative size means all."""
        lines, total = logs.read_page(self.files.log(session.id), start, size)
        if start is None:
            start = total - len(lines)  # the page ends at the last line
        return {"id": session.id, "from": start, "total": total, "log": lines}
