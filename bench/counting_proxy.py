"""A reverse proxy that counts and timestamps every HTTP request a client makes to the server.

It runs on its own event loop in a background thread of the benchmark, between an Airflow task
and our server, and keeps (arrival time, method, path, status, JSON body) of each exchange, so a
benchmark can count a client's calls and see when the client first learned a batch had ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import free_port

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass
class Exchange:
    at: float  # time.time() when the request arrived
    done: float  # time.time() when the answer was sent back
    method: str
    path: str
    status: int
    body: Any  # parsed JSON answer, or None


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.exchanges: list[Exchange] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="counting-proxy", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession(auto_decompress=False) as client:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", lambda request: self._forward(client, request))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

    async def _forward(self, client: aiohttp.ClientSession, request: web.Request) -> web.Response:
        at = time.time()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        async with client.request(request.method, self.upstream + request.path_qs, headers=headers, data=body or None) as answer:
            content = await answer.read()
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS}
            status = answer.status
        parsed = None
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            parsed = json.loads(content) if content else None
        self.exchanges.append(Exchange(at, time.time(), request.method, request.path, status, parsed))
        return web.Response(body=content, status=status, headers=out_headers)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the counting proxy did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def take(self) -> list[Exchange]:
        """The exchanges so far, and start counting afresh."""
        taken, self.exchanges = self.exchanges, []
        return taken


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[CountingProxy]:
    with CountingProxy(upstream) as proxy:
        yield proxy
