"""What a tracker is: one per kind of cluster follows drivers through the cluster manager's API.

A tracker is plain data plus four calls, run in a worker thread (they block on HTTP):
- `submit_conf(tag)`: spark-submit settings (don't wait; tag the app so a listing finds it),
- `submitted_id(line)`: the cluster's id for the driver in a line of spark-submit's output,
- `poll(handles)`: one request, the status of every followed driver it knows (by tag),
- `kill(handle)`: ask the cluster to kill the driver; the next poll confirms.
plus `driver_output(handle, status)` (the driver's own output where the cluster serves it) and
`coordinates`: what the store record keeps so a restarted server, on any port or host, builds the
same tracker again. drivers/cluster.py picks the tracker and follows the drivers with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import requests

HTTP_TIMEOUT = 10.0


@dataclass(slots=True)
class Status:
    """A driver as its cluster reports it, in Livy's terms."""

    state: str  # starting, running, success, dead or killed
    detail: str  # the cluster's own words for the state (kept short: one Status per followed driver)
    app_id: str | None = None
    ui_url: str | None = None
    driver_log_url: str | None = None
    worker_url: str | None = None  # standalone: the worker's web UI, which serves the driver's output


@dataclass(slots=True)
class Handle:
    """One followed driver: our tag for it, the cluster's id, and what following it needs."""

    tag: str
    cluster_id: str
    since: float  # wall clock of submission: bounds a listing's time window
    misses: int = 0
    app_id: str | None = None  # the app's id once known (standalone: differs from the driver's)
    log_offset: int = 0  # standalone: bytes of the driver's stderr read while its app id is unknown
    status: Status | None = None  # as of the last poll; a tracker answers this same object when nothing changed


class Tracker(Protocol):
    coordinates: dict[str, Any]
    finds_by_tag: bool  # a listing finds the driver by our tag alone, without the id spark-submit printed
    driver_env: str  # the prefix of Spark settings that set the driver's environment ("": none, no sessions there)

    def submit_conf(self, tag: str) -> dict[str, str]: ...
    def submitted_id(self, line: str) -> str | None: ...
    def poll(self, handles: Iterable[Handle]) -> dict[str, Status]: ...
    def kill(self, handle: Handle) -> None: ...
    def driver_output(self, handle: Handle, status: Status) -> list[str]: ...
    def log_hint(self, handle: Handle, status: Status | None) -> str: ...


def http_session() -> requests.Session:
    session = requests.Session()
    session.headers["Accept"] = "application/json"
    return session
