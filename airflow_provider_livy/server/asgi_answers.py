"""Whole answers sent straight through ASGI, for the layers in front of the app (sign-in, the group's front).

They answer before FastAPI runs (a refused sign-in, a standby's 503), so they send the response themselves;
a JSON body is Livy's `{"msg": ...}` shape wherever it carries a reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
RawHeaders = Iterable[tuple[bytes, bytes]]


async def answer(send: Send, status: int, body: bytes, content_type: str, headers: RawHeaders = ()) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def answer_json(send: Send, status: int, value: Any, headers: RawHeaders = ()) -> None:
    await answer(send, status, json.dumps(value).encode(), "application/json", headers)
