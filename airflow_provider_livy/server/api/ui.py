"""The web UI at /ui: server-rendered pages over the same registry and views as the API.

Why it exists: a page with counts by state, the oldest finished session and the retention in force
shows in a minute what took days to notice through the API (40,000 finished sessions under a
24-day timeout). Pages are plain HTML rendered with Jinja2 (autoescaped: names and log lines stay
text) and work without JavaScript; static/ui.js adds the live parts only (the overview refreshes, a
running session's page follows its state and driver log through the JSON API, Delete calls the
API's DELETE with the CSRF header). Every asset comes from this package: nothing is loaded from
another host. With authentication on, the SecurityMiddleware asks for the same credentials as the
API, and a user sees exactly what GET /batches would show them.

Held sessions are read only through the accessor functions of a Kind (items, counts, summary,
view, log page, statements), one per family of sessions (batches; interactive sessions), built
from that family's service in `kind_of`; the overview merges the families newest first, lazily,
without copying a registry.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from airflow_provider_livy.protocol import BATCHES_PATH, CSRF_HEADER, DEFAULT_LOG_PAGE, SESSIONS_PATH, TERMINAL_STATES
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.security import AccessPolicy
from airflow_provider_livy.server.sessions.interactive import SessionNotReady
from airflow_provider_livy.server.sessions.lifecycle import SessionService
from airflow_provider_livy.server.sessions.repl_client import ReplRefused, ReplUnreachable

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


@dataclass(frozen=True)
class Kind:
    """One kind of held session, as the UI reads it. Each field is a small accessor over the registry."""

    name: str  # "batch", "session"
    api_path: str  # "/batches", "/sessions"
    items: Callable[[], Mapping[int, Any]]  # id -> held item, in ascending id (= creation) order
    counts: Callable[[], Mapping[str, int]]  # held items by state
    summary: Callable[[Any], dict[str, Any]]  # the overview's fields, from memory only (no log read)
    view: Callable[[Any], Mapping[str, Any]]  # the API's view, as GET {api_path}/{id} answers
    log_page: Callable[[Any, int | None, int], dict[str, Any]]  # as GET {api_path}/{id}/log answers
    lookup: Callable[[str], Any]
    oldest_finished: Callable[[], Any]  # the finished item held longest, or None
    # interactive sessions: the newest statements (newest first), or why they cannot be read
    statements: Callable[[Any], Awaitable[list[dict[str, Any]] | str]] | None = None

    @property
    def ui_path(self) -> str:
        return UI_PATH + self.api_path


def kind_of(service: SessionService) -> Kind:
    """The accessors for one family of sessions."""
    registry, interactive = service.registry, service.interactive

    def summary(item: Any) -> dict[str, Any]:
        finished, repl = item.finished_at, item.repl
        expires = registry.expires_at(item)
        if expires is None and interactive is not None:
            expires = interactive.expires_at(item)  # idleness or ttl will end it
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
            "expiresAt": expires,
            # idle since it finished; an interactive session also while it waits for statements
            "lastActivity": finished if finished is not None or repl is None else repl.last_activity,
        }

    async def statements(item: Any) -> list[dict[str, Any]] | str:
        assert interactive is not None
        try:
            newest = {"from": 0, "size": STATEMENTS_SHOWN, "order": "desc"}
            raw = await interactive.call(item, "GET", "/statements", params=newest)
            return json.loads(raw)["statements"]
        except (SessionNotReady, ReplRefused, ReplUnreachable) as err:
            return f"Statements cannot be read: {err}"
        except (ValueError, KeyError, TypeError):
            return "Statements cannot be read: the session's driver answered something else than a statement list"

    return Kind(
        name="batch" if interactive is None else "session",
        api_path=BATCHES_PATH if interactive is None else SESSIONS_PATH,
        items=lambda: registry.batches,
        counts=lambda: registry.state_counts,
        summary=summary,
        view=service.view,
        log_page=service.log_page,
        lookup=registry.lookup,
        oldest_finished=registry.oldest_finished,
        statements=None if interactive is None else statements,
    )


# What the overview reads of every held item; each kind's items have these attributes.
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


def newest_first(kinds: list[Kind], scope: Scope, state: str | None) -> Iterator[tuple[Kind, Any]]:
    """Held items of every kind, newest first, filtered, lazily: a page costs its offset, not the registry."""

    def tagged(kind: Kind) -> Iterator[tuple[Kind, Any]]:
        items: Iterable[Any] = scope.visible(reversed(kind.items().values()))
        if state:
            items = (item for item in items if state_of(item) == state)
        return zip(itertools.repeat(kind), items)  # no Python frame per item: a deep page skips at C speed

    held = [kind for kind in kinds if kind.items()]
    if len(held) <= 1:  # the common case: no merge, whose key costs a Python call per item skipped
        return tagged(held[0]) if held else iter(())
    return heapq.merge(*(tagged(kind) for kind in held), key=lambda pair: created_of(pair[1]), reverse=True)


def state_counts(kinds: list[Kind], scope: Scope) -> dict[str, int]:
    """Counts by state over what the user may see: the registry's counters when that is everything."""
    counts: dict[str, int] = {}
    for kind in kinds:
        if scope.sees_all:
            pairs: Iterable[tuple[str, int]] = kind.counts().items()
        else:
            pairs = ((state_of(item), 1) for item in scope.visible(kind.items().values()))
        for state, count in pairs:
            counts[state] = counts.get(state, 0) + count
    return counts


def oldest_finished(kinds: list[Kind], scope: Scope) -> tuple[Kind, dict[str, Any]] | None:
    """The finished session held longest: the first thing to look at when sessions pile up. The
    registry knows it at once; for a user who sees only their own, one pass reads one attribute each."""
    found = []
    for kind in kinds:
        if scope.sees_all:
            item = kind.oldest_finished()
        else:
            finished = ((finished_of(item), item) for item in scope.visible(kind.items().values()))
            oldest = min((pair for pair in finished if pair[0] is not None), key=itemgetter(0), default=None)
            item = None if oldest is None else oldest[1]
        if item is not None:
            found.append((finished_of(item), kind, item))
    if not found:
        return None
    _, kind, item = min(found, key=itemgetter(0))
    return kind, kind.summary(item)


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
class BadQuery(ValueError):
    pass


def query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"'{name}' must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"'{name}' must be between {low} and {high}, got {value}")
    return value


# Behind the escaping, a second wall: the pages run only this server's own script and styles (none inline),
# load images only from here or data: URLs (statement plots), and cannot be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(static=STATIC_PATH, csrf_header=CSRF_HEADER, **context)
    return HTMLResponse(html, status, headers=PAGE_HEADERS)


def problem(status: int, message: str, user: str | None) -> HTMLResponse:
    return render("problem.html", status, title=f"{status}", message=message, user=user, now=time.time())


def install(app: FastAPI, services: list[SessionService], policy: AccessPolicy) -> None:
    """Add / (a redirect), /ui, /ui/{batches|sessions}/{id} and the UI's static files to the app."""
    kinds = [kind_of(service) for service in services]
    config = services[0].config
    by_path = {kind.api_path.strip("/"): kind for kind in kinds}
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="ui-static")

    def scope_of(request: Request) -> Scope:
        return Scope(request.scope.get("state", {}).get("user"), policy)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse(UI_PATH, status_code=307)

    @app.get(UI_PATH, include_in_schema=False)
    @app.get(UI_PATH + "/", include_in_schema=False)
    async def overview(request: Request) -> Response:
        scope = scope_of(request)
        state = request.query_params.get("state") or None
        try:
            start = query_int(request, "from", 0, 0, 2**31) or 0
            size = query_int(request, "size", PAGE_SIZE, 1, MAX_PAGE_SIZE) or PAGE_SIZE
        except BadQuery as err:
            return problem(400, str(err), scope.user)
        counts = state_counts(kinds, scope)
        held = sum(counts.values())
        total = counts.get(state, 0) if state else held
        rows = [
            {"kind": kind, **kind.summary(item)}
            for kind, item in itertools.islice(newest_first(kinds, scope, state), start, start + size)
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
            total=total,
            held=held,
            oldest=oldest_finished(kinds, scope),
            retention=retention(config, sum(sum(kind.counts().values()) for kind in kinds)),
            own_only=not scope.sees_all,
        )

    @app.get(UI_PATH + "/{kind_path}/{key}", include_in_schema=False)
    async def detail(kind_path: str, key: str, request: Request) -> Response:
        scope = scope_of(request)
        kind = by_path.get(kind_path)
        item = None if kind is None else kind.lookup(key)
        if kind is None or item is None:
            return problem(404, f"No session {key!r} here: it was deleted, or its retention ended.", scope.user)
        if not policy.can_view(scope.user, owner_of(item)):
            return problem(403, f"User '{scope.user}' is not allowed to view {kind.name} {key}.", scope.user)
        try:
            start = query_int(request, "from", None, 0, 2**31)
            size = query_int(request, "size", DEFAULT_LOG_PAGE, 1, LOG_PAGE_MAX) or DEFAULT_LOG_PAGE
        except BadQuery as err:
            return problem(400, str(err), scope.user)
        view = dict(kind.view(item))
        page = await asyncio.to_thread(kind.log_page, item, start, size)
        statements = None if kind.statements is None else await kind.statements(item)
        return render(
            "detail.html",
            title=f"{kind.name} {view['id']}",
            user=scope.user,
            now=time.time(),
            kind=kind,
            view=view,
            summary=kind.summary(item),
            page=page,
            size=size,
            following=start is None and view["state"] not in TERMINAL_STATES,
            can_delete=policy.can_modify(scope.user, owner_of(item)),
            statements=statements,
            active=view["state"] not in TERMINAL_STATES,
        )
