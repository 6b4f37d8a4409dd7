"""The driver's one call to the server: where it listens, once it does (retried; a 4xx stops it)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from .log import log
from .repl import Repl
from .settings import Settings


def advertised_host(bind: str, spark: Any) -> str:
    """The host the server reaches us at: the bind address, or the driver's host when bound to all."""
    if bind not in ("0.0.0.0", "::", ""):
        return f"[{bind}]" if ":" in bind else bind
    if spark is not None:
        host = spark.sparkContext.getConf().get("spark.driver.host", None)
        if host:
            return host
    return socket.getfqdn()


def call_back(settings: Settings, repl: Repl, address: str, spark: Any) -> None:
    """Tell the server where we listen; retried with backoff. A 4xx means it disowns us: stop."""
    sc = spark.sparkContext if spark is not None else None
    payload = json.dumps(
        {"address": address, "appId": sc.applicationId if sc else None, "sparkUiUrl": sc.uiWebUrl if sc else None}
    ).encode()
    if not settings.callback:
        log("no LIVY_REPL_CALLBACK: nobody is told where this driver listens")
        return
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in Settings
        settings.callback,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {settings.secret}",
        },
    )
    for attempt, delay in enumerate((0.5, 1, 2, 4, 8, 15, 0)):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - checked in Settings
                response.read()
            return
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500:
                repl.request_stop(f"the server answered the callback with {err.code}")
                return
            problem = f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            problem = str(err)
        log(f"callback attempt {attempt + 1} failed ({problem})" + (f"; retrying in {delay} s" if delay else ""))
        time.sleep(delay)
    log("the server never answered the callback; the idle timeout will end this driver")
