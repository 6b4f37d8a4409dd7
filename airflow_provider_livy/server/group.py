"""One server of a group on one ZooKeeper (recovery mode ha): what it answers while it does not lead, and its takeover.

Every server of the group listens from its start, so while any server process is up a client
never meets a refused connection. Until it leads, a server answers:
- `GET /ready` 503 `{"role": "standby", "leader": url or null}`; the leader answers 200
  `{"role": "leader", "leader": url, "epoch": N}`. No authentication, and nothing else in it.
- `/version` itself, and `/metrics` with the group's three metrics (on the leader they follow its own).
- on the leader while its ZooKeeper connection is suspended, a POST or DELETE 503 (nothing is started,
  killed or forgotten until the lead is confirmed); reads are answered from memory.
- everything else proxied to the leader, as sent (method, path, query, headers, body) and answered
  as the leader answers; while no server leads (or the leader does not answer), 503 + Retry-After.
  Once this server was elected, requests wait for its takeover (recovery) to finish instead.
  With `livy.server.ha.standby = redirect`, API requests are answered `307` to the same path and query
  at the leader instead (the UI is still proxied; with no leader, or while this server takes over, as above).
  The proxy is the default: it works for every client unmodified. On a redirect to another port or host
  requests (pylivy, sparkmagic, Airflow's HTTP hooks) drops the Authorization header, and curl follows
  none without -L, so a 307 fails the clients that sign in with a password (sparkmagic's Kerberos refuses
  the 307 itself; requests-gssapi answers the leader's challenge and passes); and a 307 given in the second
  before the leader crashed sends its client to a refused connection where the proxy answers 503 (past that
  second a redirecting standby asks the leader's /ready first, LEADER_HEARD_FOR). A followed 307 is
  a fraction of a millisecond faster than the proxy (README, "Several servers on one ZooKeeper").

Taking over builds the server as a lone server builds itself at start-up: recovery reads every
record from ZooKeeper, through stores fenced by this leadership, re-attaches what runs and resumes
the clocks from the stored wall-clock times. Then its start-up runs and it serves.

A leader that loses its place (its session expired, another took over, ZooKeeper refused a fenced
write) ends its process at once, exit code 75: that stops every side effect (launches, followers,
clocks) for certain, drivers keep running for the new leader, and a supervisor (systemd's
Restart=always, a Kubernetes Deployment) starts it again as a standby. SIGTERM releases the lead
before uvicorn waits for open requests, so the next server takes over within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from airflow_provider_livy import __version__
from airflow_provider_livy.protocol import READY_PATH
from airflow_provider_livy.server.api import ui
from airflow_provider_livy.server.api.schemas import LIVY_API_VERSION
from airflow_provider_livy.server.asgi_answers import answer, answer_json
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.fence import Fence
from airflow_provider_livy.server.leadership import Leadership, Role
from airflow_provider_livy.zookeeper_auth import parse_auth

log = logging.getLogger(__name__)

App = Callable[..., Any]  # an ASGI application
STEPPED_DOWN = 75  # the exit code of a leader that lost its place (EX_TEMPFAIL: start me again)
RETRY_HEADERS = ((b"retry-after", b"1"),)  # on a 503 of the front: a handover takes about a second
PLACED_WAIT = 5.0
TAKEOVER_WAIT = 15.0  # longest a request waits for this server's own takeover to finish
HANDOVER_WAIT = 1.0  # how long a request the leader did not take waits to learn of the next one
# A redirecting standby sends clients to a leader that answered its /ready within this many seconds, else asks
# again: a leader killed -9 is still named by ZooKeeper until its session expires, and its clients must get a
# 503 to retry, not a refused connection.
LEADER_HEARD_FOR = 1.0
SAFE = {"GET", "HEAD", "OPTIONS"}  # what a leader whose connection is suspended still answers (from memory)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "host"}


class GroupCollector(Collector):
    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership

    def collect(self) -> list[Metric]:
        leadership = self.leadership
        return [
            GaugeMetricFamily("livy_ha_leader", "1 while this server leads its group", value=int(leadership.leading)),
            CounterMetricFamily("livy_ha_takeovers", "Times this server took the lead", value=leadership.takeovers),
            CounterMetricFamily(
                "livy_ha_fence_refused_writes", "ZooKeeper writes refused by the fence", value=leadership.fence.refused
            ),
        ]


class GroupFront:
    """The ASGI app uvicorn serves in recovery mode ha: the front above, the server's own app once leading.

    `build(fence)` makes the server's app (its recovery included) with stores fenced by `fence`.
    """

    def __init__(self, config: ServerConfig, build: Callable[[Fence], App]) -> None:
        self.config = config
        self.url = config.advertised_url
        self.leadership = Leadership(
            config.state_store_url,
            config.zk_key_prefix,
            self.url,
            config.ha_session_timeout,
            on_change=self._changed,
            auth=parse_auth(config.zk_auth),
        )
        self._build = build
        self._app: App | None = None  # the server's app, started, while this server leads
        self._inner_lifespan: _Lifespan | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy: httpx.AsyncClient | None = None
        self._led = False
        self._serving: asyncio.Event | None = None  # set once the server's app serves here
        self._heard: tuple[str, float] = ("", 0.0)  # the leader a redirecting standby last heard from, and when
        self._standby = self._redirect if config.ha_standby == "redirect" else self._forward
        ui.show_group(self._place)
        self.metrics = CollectorRegistry()
        self.metrics.register(GroupCollector(self.leadership))

    # --- leadership (from the election thread) ---------------------------------------------
    def _changed(self, role: Role) -> None:
        if role.leading:
            self._led = True
            if self._loop is not None:
                asyncio.run_coroutine_threadsafe(self._take_over(), self._loop)
        elif self._led and not self.leadership.stopping:
            log.error(
                "%s lost the lead of its group: ending this process (exit code %d) so that nothing more happens here",
                self.url,
                STEPPED_DOWN,
            )
            logging.shutdown()
            os._exit(STEPPED_DOWN)

    async def _take_over(self) -> None:
        log.info("%s leads its group (epoch %d): recovering every record from ZooKeeper", self.url, self.leadership.role.epoch)
        try:
            app = await asyncio.to_thread(self._build, self.leadership.fence)
            lifespan = _Lifespan(app)
            await lifespan.startup()
        except Exception:
            log.exception("taking over failed: ending this process so that another server leads")
            logging.shutdown()
            os._exit(STEPPED_DOWN)
        self._inner_lifespan, self._app = lifespan, app
        if self._serving is not None:
            self._serving.set()
        log.info("%s serves as the leader", self.url)

    def _hook_sigterm(self) -> None:
        """Ahead of uvicorn's own handler (installed before the lifespan starts), which it then calls."""
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            self._release()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)

    def _release(self, *_args: Any) -> None:
        """SIGTERM: stop taking work and hand over now, before uvicorn waits for open requests."""
        self.leadership.fence.disarm()
        threading.Thread(target=self.leadership.stop, name="handover", daemon=True).start()

    # --- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and path == READY_PATH:
            await self._ready(send)
            return
        app = self._app
        if scope["type"] == "http" and path == "/metrics":
            if app is None:
                await answer(send, 200, generate_latest(self.metrics), "text/plain; version=0.0.4; charset=utf-8")
            else:
                await app(scope, receive, _MetricsAppender(send, generate_latest(self.metrics)))
            return
        if app is not None and scope["type"] == "http" and scope["method"] not in SAFE and not self.leadership.leading:
            await _unavailable(send, "this server cannot confirm it still leads (its ZooKeeper connection is suspended)")
        elif app is not None:
            await app(scope, receive, send)
        elif scope["type"] != "http":
            return
        elif path == "/version":
            body = {"version": LIVY_API_VERSION, "server": "airflow-provider-livy", "serverVersion": __version__}
            await answer_json(send, 200, body)
        else:
            await self._standby(scope, receive, send)

    def _place(self) -> dict[str, Any]:
        role = self.leadership.role
        if role.leading:
            return {"role": "leader", "leader": None, "epoch": role.epoch}
        return {"role": "standby", "leader": role.leader, "epoch": None}

    async def _ready(self, send: Callable[..., Any]) -> None:
        role = self.leadership.role
        if role.leading and self._app is not None and self.leadership.leading:
            await answer_json(send, 200, {"role": "leader", "leader": self.url, "epoch": role.epoch})
        else:
            leader = role.leader if role.leader != self.url else None
            await answer_json(send, 503, {"role": "standby", "leader": leader}, RETRY_HEADERS)

    async def _redirect(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        """Standby mode redirect: a 307 to the same path and query at the leader, which keeps the method and body.
        The UI is still proxied, so every server shows it; with no other leader, as the proxy (503, or the wait)."""
        leader = self.leadership.role.leader
        path = scope["path"]
        if leader is None or leader == self.url or path == ui.UI_PATH or path.startswith(ui.UI_PATH + "/"):
            await self._forward(scope, receive, send)
            return
        if not await self._answers(leader):
            await _unavailable(send, f"the leader of the group ({leader}) did not answer")
            return
        query = scope.get("query_string", b"")
        raw_path = scope.get("raw_path") or path.encode()
        location = leader.rstrip("/").encode() + raw_path.split(b"?")[0] + (b"?" + query if query else b"")
        why = {"msg": f"this server stands by: the leader of its group is {leader}"}
        await answer_json(send, 307, why, ((b"location", location),))

    async def _answers(self, leader: str) -> bool:
        """Whether `leader` answers: heard from within LEADER_HEARD_FOR seconds, else its /ready asked now."""
        now = asyncio.get_running_loop().time()
        if self._heard[0] == leader and now - self._heard[1] < LEADER_HEARD_FOR:
            return True
        if self._proxy is None:
            return False
        try:
            await self._proxy.get(leader.rstrip("/") + READY_PATH, timeout=LEADER_HEARD_FOR)
        except httpx.HTTPError:
            return False
        self._heard = (leader, now)
        return True

    async def _forward(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any], replayed: bool = False
    ) -> None:
        leader = self.leadership.role.leader
        if leader == self.url and self._serving is not None:
            # This server leads and is recovering: hold the request until it serves (a handover's fraction of a
            # second), rather than fail a client that does not retry.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._serving.wait(), TAKEOVER_WAIT)
            if self._app is not None:
                await self._app(scope, receive, send)
                return
        if leader is None or leader == self.url or self._proxy is None:
            await _unavailable(send, "no server of the group leads right now")
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        headers = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
        query = scope.get("query_string", b"").decode("latin-1")
        url = leader.rstrip("/") + scope.get("raw_path", scope["path"].encode()).decode("latin-1").split("?")[0]
        request = self._proxy.build_request(
            scope["method"],
            url + (f"?{query}" if query else ""),
            headers=[*headers, ("x-forwarded-by", self.url)],
            content=bytes(body),
        )
        try:
            answer = await self._proxy.send(request, stream=True)
        except httpx.HTTPError as err:
            # Refused, or a connection closed or reset before an answer: a leader that is handing over. A refused
            # request never reached it, and a safe one may be asked again: ask the next leader once it is known.
            repeatable = isinstance(err, httpx.ConnectError) or (
                isinstance(err, httpx.TransportError) and scope["method"] in SAFE
            )
            if repeatable and not replayed and await self._leader_changes(leader):
                await self._forward(scope, _replay(bytes(body)), send, replayed=True)
            else:
                log.warning("the leader %s did not answer (%s)", leader, type(err).__name__)
                await _unavailable(send, f"the leader of the group ({leader}) did not answer")
            return
        try:
            out = [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.multi_items() if k.lower() not in HOP_BY_HOP
            ]
            await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
            async for chunk in answer.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await answer.aclose()

    async def _leader_changes(self, leader: str) -> bool:
        deadline = asyncio.get_running_loop().time() + HANDOVER_WAIT
        while self.leadership.role.leader in (leader, None):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _lifespan(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._serving = asyncio.Event()
                timeout = httpx.Timeout(10.0, read=self.config.state_wait_max + 30.0)
                self._proxy = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
                try:
                    await asyncio.to_thread(self.leadership.start)
                except ConnectionError as err:
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await asyncio.to_thread(self.leadership.placed.wait, PLACED_WAIT)  # so the first requests know the leader
                self._hook_sigterm()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._release()
                if self._inner_lifespan is not None:
                    with contextlib.suppress(Exception):
                        await self._inner_lifespan.shutdown()
                if self._proxy is not None:
                    await self._proxy.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _replay(body: bytes) -> Callable[[], Any]:
    """An ASGI receive that gives an already read request body again."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class _Lifespan:
    """Runs an ASGI app's lifespan by hand: the server's app starts long after uvicorn's own start-up."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        answer = await self._from_app.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the server's start-up failed: {answer.get('message', answer['type'])}")

    async def shutdown(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await self._from_app.get()


class _MetricsAppender:
    """The leader's own /metrics answer with the group's metrics after it (only on a 200)."""

    def __init__(self, send: Callable[..., Any], extra: bytes) -> None:
        self.send, self.extra, self.ok = send, extra, False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.ok = message["status"] == 200
            message = {**message, "headers": [(k, v) for k, v in message["headers"] if k.lower() != b"content-length"]}
        elif message["type"] == "http.response.body" and self.ok and not message.get("more_body"):
            message = {**message, "body": message.get("body", b"") + self.extra}
        await self.send(message)


async def _unavailable(send: Callable[..., Any], why: str) -> None:
    await answer_json(send, 503, {"msg": f"{why}; retry shortly"}, RETRY_HEADERS)
