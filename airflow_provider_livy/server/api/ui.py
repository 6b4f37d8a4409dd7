"""The web UI at /ui: server-rendered pages over the same registry and views as the API.

Why it exists: a page with counts by state, the oldest finished session and the retention in force
shows in a minute what took days to notice through the API (40,000 finished sessions under a
24-day timeout). Pages are plain HTML rendered with Jinja2 (autoescaped: names and log lines stay
text) and work without JavaScript; static/ui.js adds the live parts only (the overview refreshes, a
running session's page follows its state and driver log through the JSON API, Delete calls the
API's DELETE with the CSRF header). Every asset comes from this package: nothing is loaded from
another host. With authentication on, the SecurityMiddleware asks for the same credentials as the
API, and a user sees exactly what GET /batches would show them.

Held sessions are read through each family's service (its registry, views and log pages) and its
protocol descriptor (words and paths); the overview merges the families newest first, lazily,
without copying a registry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from airflow_provider_livy.protocol import CSRF_HEADER, DEFAULT_LOG_PAGE, TERMINAL_STATES, Family
from airflow_provider_livy.server.api.access import VIEW, authorize, user_of
from airflow_provider_livy.server.api.parsing import ApiError, not_found, query_int
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.security import AccessPolicy
from airflow_provider_livy.server.sessions.lifecycle import SessionService
from airflow_provider_livy.server.sessions.model import Session

HERE = Path(__file__).parent
UI_PATH = "/ui"
STATIC_PATH = f"{UI_PATH}/static"
PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
LOG_PAGE_MAX = 1000
STATEMENTS_SHOWN = 50  # the newest statements on a session's page
DAY = 86400.0
CROWDED = 0.8  # of max-sessions: the banner warns above this
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
)


def summary(service: SessionService, item: Session) -> dict[str, Any]:
    """The overview's fields, from memory only (no log read)."""
    finished, repl = item.finished_at, item.repl
    return {
        "id": item.id,
        "name": item.name,
        "owner": item.owner,
        "state": item.state,
        "sessionKind": None if repl is None else repl.kind,
        "appId": item.app_id,
        "sparkUiUrl": item.ui_url,
        "createdAt": item.created_at,
        "finishedAt": finished,
        "expiresAt": service.views.expires_at(item),
        # idle since it finished; an interactive session also while it waits for statements
        "lastActivity": finished if finished is not None or repl is None else repl.last_activity,
    }


# What the overview reads of every held item.
owner_of: Callable[[Any], str | None] = attrgetter("owner")
created_of: Callable[[Any], float] = attrgetter("created_at")
state_of: Callable[[Any], str] = attrgetter("state")
finished_of: Callable[[Any], float | None] = attrgetter("finished_at")  # None while active


# --- formatting -------------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    """'3d 4h', '5m 12s', '40s': two units at most."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def timestamp(epoch: float | None) -> str:
    """UTC to the second. time.strftime: a tenth of datetime's cost, and a page formats 100 of these."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def web_url(url: str | None) -> str | None:
    """Only http(s) links are rendered as links: a javascript: URL from a driver stays text."""
    return url if url and url.startswith(("http://", "https://")) else None


def thousands(number: int) -> str:
    return f"{number:,}"


_templates.filters.update(duration=duration, timestamp=timestamp, web_url=web_url, thousands=thousands)
_templates.globals["group"] = lambda: None  # recovery mode ha: this server's role in its group (show_group)


def show_group(role: Callable[[], dict[str, Any] | None]) -> None:
    """Every page's header shows what `role()` answers: {"role", "leader", "epoch"} (server.group sets it)."""
    _templates.globals["group"] = role


# --- what a user sees ----------------------------------------------------------------------------
@dataclass
class Scope:
    """A request's user and what they may see: GET /batches's rule (all, or their own)."""

    user: str | None
    policy: AccessPolicy

    @property
    def sees_all(self) -> bool:
        return self.policy.sees_all(self.user)

    def visible(self, items: Iterable[Any]) -> Iterator[Any]:
        if self.sees_all:
            return iter(items)
        return (item for item in items if owner_of(item) == self.user)


def newest_first(services: list[SessionService], scope: Scope, state: str | None) -> Iterator[tuple[SessionService, Any]]:
    """Held items of every family, newest first, filtered, lazily: a page costs its offset, not the registry."""

    def tagged(service: SessionService) -> Iterator[tuple[SessionService, Any]]:
        items: Iterable[Any] = scope.visible(reversed(service.registry.sessions.values()))
        if state:
            items = (item for item in items if state_of(item) == state)
        return zip(itertools.repeat(service), items)  # no Python frame per item: a deep page skips at C speed

    held = [service for service in services if service.registry.sessions]
    if len(held) <= 1:  # the common case: no merge, whose key costs a Python call per item skipped
        return tagged(held[0]) if held else iter(())
    return heapq.merge(*(tagged(service) for service in held), key=lambda pair: created_of(pair[1]), reverse=True)


def state_counts(services: list[SessionService], scope: Scope) -> dict[str, int]:
    """Counts by state over what the user may see: the registry's counters when that is everything."""
    counts: dict[str, int] = {}
    for service in services:
        if scope.sees_all:
            pairs: Iterable[tuple[str, int]] = service.registry.state_counts.items()
        else:
            pairs = ((state_of(item), 1) for item in scope.visible(service.registry.sessions.values()))
        for state, count in pairs:
            counts[state] = counts.get(state, 0) + count
    return counts


def oldest_finished(services: list[SessionService], scope: Scope) -> tuple[Family, dict[str, Any]] | None:
    """The finished session held longest: the first thing to look at when sessions pile up. The
    registry knows it at once; for a user who sees only their own, one pass reads one attribute each."""
    found = []
    for index, service in enumerate(services):
        if scope.sees_all:
            item = service.registry.oldest_finished()
        else:
            finished = ((finished_of(item), item) for item in scope.visible(service.registry.sessions.values()))
            oldest = min((pair for pair in finished if pair[0] is not None), key=itemgetter(0), default=None)
            item = None if oldest is None else oldest[1]
        if item is not None:
            found.append((finished_of(item), index, item))
    if not found:
        return None
    _, index, item = min(found, key=itemgetter(0))
    return services[index].family.protocol, summary(services[index], item)


def retention(config: ServerConfig, held: int) -> dict[str, Any]:
    """The settings that decide how long sessions stay, and what looks dangerous about them."""
    warnings = []
    for key, seconds in (
        ("livy.server.session.state-retain.sec", config.state_retain),
        ("livy.server.session.timeout", config.session_timeout),
    ):
        if seconds > DAY:
            warnings.append(f"{key} is {duration(seconds)}: finished sessions pile up for more than a day")
    if held > CROWDED * config.max_sessions:
        warnings.append(
            f"{held:,} sessions held, over {CROWDED:.0%} of livy.server.session.max-sessions ({config.max_sessions:,}): "
            "the oldest finished ones are being evicted early"
        )
    return {
        "state_retain": config.state_retain,
        "session_timeout": config.session_timeout,
        "max_sessions": config.max_sessions,
        "ttl": config.batch_ttl,
        "held": held,
        "warnings": warnings,
    }


# --- pages ------------------------------------------------------------------------------------------
# Behind the escaping, a second wall: the pages run only this server's own script and styles (none inline),
# load images only from here or data: URLs (statement plots), and cannot be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(static=STATIC_PATH, ui=UI_PATH, csrf_header=CSRF_HEADER, **context)
    return HTMLResponse(html, status, headers=PAGE_HEADERS)


def problem(status: int, message: str, user: str | None) -> HTMLResponse:
    return render("problem.html", status, title=f"{status}", message=message, user=user, now=time.time())


def install(app: FastAPI, services: list[SessionService], policy: AccessPolicy) -> None:
    """Add / (a redirect), /ui, /ui/{batches|sessions}/{id} and the UI's static files to the app."""
    pages = Pages(services, policy)
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="ui-static")
    app.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    for path in (UI_PATH, UI_PATH + "/"):
        app.add_api_route(path, pages.overview, methods=["GET"], include_in_schema=False)
    app.add_api_route(UI_PATH + "/{family_path}/{key}", pages.detail, methods=["GET"], include_in_schema=False)


async def root() -> Response:
    return RedirectResponse(UI_PATH, status_code=307)


class Pages:
    """The overview and a session's page, over every family's service."""

    def __init__(self, services: list[SessionService], policy: AccessPolicy) -> None:
        self.services = services
        self.policy = policy
        self.config = services[0].config
        self.by_path = {service.family.protocol.path.strip("/"): service for service in services}

    def scope_of(self, request: Request) -> Scope:
        return Scope(user_of(request), self.policy)

    async def overview(self, request: Request) -> Response:
        scope = self.scope_of(request)
        state = request.query_params.get("state") or None
        try:
            start = query_int(request, "from", 0, 0, 2**31, blank_is_default=True) or 0
            size = query_int(request, "size", PAGE_SIZE, 1, MAX_PAGE_SIZE, blank_is_default=True) or PAGE_SIZE
        except ApiError as err:
            return problem(400, err.message, scope.user)
        counts = state_counts(self.services, scope)
        held = sum(counts.values())
        rows = [
            {"family": service.family.protocol, **summary(service, item)}
            for service, item in itertools.islice(newest_first(self.services, scope, state), start, start + size)
        ]
        return render(
            "overview.html",
            title="Sessions",
            user=scope.user,
            now=time.time(),
            rows=rows,
            counts=counts,
            state=state,
            start=start,
            size=size,
            total=counts.get(state, 0) if state else held,
            held=held,
            oldest=oldest_finished(self.services, scope),
            retention=retention(self.config, sum(len(service.registry) for service in self.services)),
            own_only=not scope.sees_all,
        )

    async def detail(self, family_path: str, key: str, request: Request) -> Response:
        scope = self.scope_of(request)
        service = self.by_path.get(family_path)
        try:
            if service is None:
                raise not_found(key)
            item = authorize(service, self.policy, key, request, VIEW, heartbeat=False)
            start = query_int(request, "from", None, 0, 2**31, blank_is_default=True)
            size = query_int(request, "size", DEFAULT_LOG_PAGE, 1, LOG_PAGE_MAX, blank_is_default=True) or DEFAULT_LOG_PAGE
        except ApiError as err:
            message = f"No session {key!r} here: it was deleted, or its retention ended." if err.status == 404 else err.message
            return problem(err.status, message, scope.user)
        assert service is not None
        view = dict(service.views.view(item))
        page = await asyncio.to_thread(service.views.log_page, item, start, size)
        return render(
            "detail.html",
            title=f"{service.family.protocol.word} {view['id']}",
            user=scope.user,
            now=time.time(),
            family=service.family.protocol,
            view=view,
            summary=summary(service, item),
            page=page,
            size=size,
            following=start is None and view["state"] not in TERMINAL_STATES,
            can_delete=self.policy.can_modify(scope.user, owner_of(item)),
            statements=await service.family.newest_statements(item, STATEMENTS_SHOWN),
            active=view["state"] not in TERMINAL_STATES,
        )
