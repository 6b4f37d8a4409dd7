"""The server's end of the channel to a session's driver (see server/repl/livy_repl/__init__.py for the contract).

One pooled HTTP client serves every session: each request names the driver's address and carries
its secret as a bearer token. Statement answers are passed through as the driver's bytes, so the
server neither parses nor re-encodes outputs (up to a MiB each) on the statement path.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 30.0  # a driver busy with Python still answers its HTTP thread at once
WAIT_SLACK = 5.0  # a long poll of S seconds may take S plus this before it counts as lost
# Idle connections kept for reuse, over all drivers. Each driver is its own origin and the pool expires idle
# connections only when it is next used, so without a bound every session that ever ran a statement kept one
# (about 1.7 KB each); the sessions in use now keep theirs.
KEEPALIVE_CONNECTIONS = 8


class ReplUnreachable(RuntimeError):
    """The driver did not answer (gone, or the network between us failed)."""


class ReplRefused(RuntimeError):
    """The driver answered with an error: its status and {"msg"} are passed on to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ReplChannel:
    """HTTP calls to drivers; one instance per server."""

    def __init__(self) -> None:
        import httpx  # here, not at the top: 0.3-0.7 s of import that a server without sessions never pays at start

        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would flood the server log
        self._httpx = httpx
        # TCP_NODELAY: a POST's headers and body leave as two writes; with Nagle the second waits for the
        # driver's delayed ACK (40 ms on Linux), which measured as +40 ms on every statement submitted.
        transport = httpx.AsyncHTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=KEEPALIVE_CONNECTIONS, keepalive_expiry=5),
        )
        self.http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(CALL_TIMEOUT, connect=CONNECT_TIMEOUT),
            trust_env=False,  # a proxy setting must never route the secret elsewhere
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        address: str,
        secret: str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        wait: float = 0.0,
    ) -> bytes:
        """The driver's answer body; ReplRefused for its 4xx/5xx, ReplUnreachable when it does not answer."""
        httpx = self._httpx
        try:
            response = await self.http.request(
                method,
                address + path,
                json=body,
                params=params,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=httpx.Timeout(wait + WAIT_SLACK if wait else CALL_TIMEOUT, connect=CONNECT_TIMEOUT),
            )
        except httpx.HTTPError as err:
            # The message names the address only: httpx never puts headers (the secret) in it.
            raise ReplUnreachable(f"the session's driver at {address} did not answer: {type(err).__name__}") from None
        if response.status_code >= 400:
            raise ReplRefused(response.status_code, _message(response.content, response.status_code))
        return response.content

    async def call_json(self, address: str, secret: str, method: str, path: str, **kwargs: Any) -> Any:
        raw = await self.call(address, secret, method, path, **kwargs)
        try:
            return json.loads(raw)
        except ValueError:
            raise ReplUnreachable(f"the session's driver at {address} answered {path} with something not JSON") from None


def _message(raw: bytes, status: int) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("msg"), str):
        return body["msg"]
    return f"the session's driver answered {status}"
