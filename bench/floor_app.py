"""The HTTP floor: a bare Starlette route answering the state call with the same JSON.

It runs under exactly the uvicorn settings `livy-server` uses (uvloop, httptools, no access log),
so the gap between it and our server is what our own code costs on the polling path.

Usage: python -m bench.floor_app PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"id":0,"state":"success"}'


async def state(_request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/batches/{key}/state", state, methods=["GET"])])

if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, loop="uvloop", http="httptools"
    )
