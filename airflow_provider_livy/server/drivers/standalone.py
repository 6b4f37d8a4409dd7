"""Spark standalone: drivers followed through the master's JSON status, killed through its REST server.

One `GET <master ui>/json/` lists every driver the master knows (active and completed, with the
worker each runs on), so one request per poll follows them all. The driver's own output is served
by its worker (`/log/?driverId=...`): read once at the end into the batch log, and read while it
runs only until the app id (`app-...`, printed by the driver) is known.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from airflow_provider_livy.protocol import DEAD, KILLED, RUNNING, STARTING, SUCCESS
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import APP_ID_RE, UI_URL_RE
from airflow_provider_livy.server.drivers.tracker import HTTP_TIMEOUT, Handle, Status, http_session

SUBMITTED_RE = re.compile(r"\b(?:Driver successfully submitted as|Submission successfully created as) (driver-\d{14}-\d{4,})\b")
STATES = {
    "SUBMITTED": STARTING,
    "RUNNING": RUNNING,
    "RELAUNCHING": RUNNING,
    "UNKNOWN": RUNNING,  # the master lost touch with the worker for now
    "FINISHED": SUCCESS,
    "FAILED": DEAD,
    "ERROR": DEAD,
    "KILLED": KILLED,
}
STATE_NAMES = {name: name for name in STATES}
# What a poll reads of the master's status: the driver lists, each driver's id, state and worker, each
# worker's id and web UI. Everything else (apps, dates, resources, ...) is dropped as it is parsed.
MASTER_FIELDS = frozenset({"workers", "activedrivers", "completeddrivers", "id", "state", "worker", "webuiaddress"})
APP_LOOKUPS_PER_POLL = 32  # drivers whose stderr is read for their app id in one poll, at most
OUTPUT_BYTES = 1 << 20  # of each of stdout and stderr, copied into the batch log at the end
LOOKUP_BYTES = 1 << 16
APP_LOOKUP_MAX_BYTES = 1 << 20  # a driver that printed no app id in its first MB of stderr has none (no SparkContext)


@dataclass
class StandaloneTracker:
    ui: str  # the master's web UI, e.g. http://master:8080
    rest: str = ""  # its REST submission server, e.g. http://master:6066 (spark.master.rest.enabled)
    session: requests.Session = field(default_factory=http_session, repr=False)
    _shared: dict[tuple[str, str | None], Status] = field(default_factory=dict, repr=False)
    finds_by_tag = False  # the master knows drivers by id only
    driver_env = ""  # standalone cluster mode runs JVM drivers only: no REPL (interactive.py refuses sessions)

    @classmethod
    def from_config(cls, config: ServerConfig) -> StandaloneTracker:
        host = urllib.parse.urlsplit(config.spark_master.split(",")[0]).hostname or "127.0.0.1"
        return cls(
            (config.standalone_ui_url or f"http://{host}:8080").rstrip("/"),
            (config.standalone_rest_url or f"http://{host}:6066").rstrip("/"),
        )

    @property
    def coordinates(self) -> dict[str, Any]:
        return {"kind": "standalone", "ui": self.ui, "rest": self.rest}

    def submit_conf(self, tag: str) -> dict[str, str]:
        return {"spark.standalone.submit.waitAppCompletion": "false"}

    def submitted_id(self, line: str) -> str | None:
        match = SUBMITTED_RE.search(line)
        return match.group(1) if match else None

    def poll(self, handles: Iterable[Handle]) -> dict[str, Status]:
        response = self.session.get(f"{self.ui}/json/", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        # Bytes straight to the parser (no decoded copy of 10,000 drivers), each object cut to the fields read
        # as soon as it is parsed: the parse's peak is a third, and its garbage is reused at once instead of
        # spreading over fresh memory pools that objects made meanwhile then pin (RSS, bench_cluster.py).
        master = json.loads(response.content, object_pairs_hook=MasterFields())
        try:
            workers = {w["id"]: w.get("webuiaddress") for w in master.get("workers") or ()}
            # One comprehension over both lists (a relaunched driver: the active entry comes last and wins).
            drivers = {e[0]: e for section in ("completeddrivers", "activedrivers") for e in master.get(section) or ()}
        except (AttributeError, KeyError, TypeError) as err:
            raise ValueError(f"the master's status at {self.ui}/json/ is not what Spark serves: {err!r}") from None
        statuses, lookups = {}, 0
        for handle in handles:
            entry = drivers.get(handle.cluster_id)
            if entry is None:
                continue
            # Shared strings only (the state's name, the worker's URL): what is kept per driver stays small.
            state, worker = STATE_NAMES.get(entry[1], "UNKNOWN"), workers.get(entry[2])
            looking = STATES[state] == RUNNING and handle.app_id is None and handle.log_offset < APP_LOOKUP_MAX_BYTES
            if handle.status is not None and not looking:
                # Reported once with its own URLs and app id: from now on one Status object per (state, worker)
                # stands for every such driver, so following one costs no Status of its own.
                shared = self._shared.get((state, worker))
                if shared is None:
                    shared = self._shared[(state, worker)] = Status(STATES[state], state, worker_url=worker)
                statuses[handle.tag] = shared
                continue
            status = Status(
                state=STATES[state],
                detail=state,
                app_id=handle.app_id,
                worker_url=worker,
                driver_log_url=self._log_page(worker, handle.cluster_id, "stderr") if worker else None,
            )
            if looking and worker and lookups < APP_LOOKUPS_PER_POLL:
                lookups += 1
                self._find_app(handle, worker, status)
            statuses[handle.tag] = status
        return statuses

    def _find_app(self, handle: Handle, worker: str, status: Status) -> None:
        """Read the driver's stderr from where we stopped until it names its app (and its UI)."""
        try:
            start, raw = self._read_log(worker, handle.cluster_id, "stderr", handle.log_offset, LOOKUP_BYTES)
        except (requests.RequestException, ValueError):
            return
        cut = raw.rfind(b"\n") + 1
        handle.log_offset = start + cut
        text = raw[:cut].decode("utf-8", errors="replace")
        if match := APP_ID_RE.search(text):
            handle.app_id = status.app_id = match.group(1)
        if match := UI_URL_RE.search(text):
            status.ui_url = match.group(1)

    def _read_log(self, worker: str, driver_id: str, kind: str, offset: int | None, length: int) -> tuple[int, bytes]:
        """(first byte's offset, bytes) of a driver log from the worker; no offset: the last `length` bytes."""
        params: dict[str, Any] = {"driverId": driver_id, "logType": kind, "byteLength": length}
        if offset is not None:
            params["offset"] = offset
        response = self.session.get(f"{worker}/log/", params=params, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        header, _, body = response.content.partition(b"\n")
        match = re.match(rb"==== Bytes (\d+)-(\d+) of (\d+)", header)
        if match is None:
            raise ValueError(f"unexpected log answer from {worker}: {header[:100]!r}")
        return int(match.group(1)), body

    @staticmethod
    def _log_page(worker: str, driver_id: str, kind: str) -> str:
        """Built by hand: urlencode costs more than the rest of a poll, and the master's driver ids are URL-safe."""
        return f"{worker}/logPage/?driverId={driver_id}&logType={kind}"

    def driver_output(self, handle: Handle, status: Status) -> list[str]:
        """The driver's stdout and stderr as its worker serves them, framed by where they came from."""
        if not status.worker_url:
            return []
        lines = []
        for kind in ("stdout", "stderr"):
            page = self._log_page(status.worker_url, handle.cluster_id, kind)
            try:
                start, raw = self._read_log(status.worker_url, handle.cluster_id, kind, None, OUTPUT_BYTES)
            except (requests.RequestException, ValueError) as err:
                lines.append(f"livy-server: could not read the driver's {kind} from {page}: {err}")
                continue
            skipped = f" (its first {start} bytes left out)" if start else ""
            lines.append(f"livy-server: the driver's {kind}{skipped}, from {page}:")
            lines += raw.decode("utf-8", errors="replace").splitlines()
        return lines

    def kill(self, handle: Handle) -> None:
        """The REST server's kill; without one, the master UI's kill (spark.ui.killEnabled, on by default)."""
        if self.rest:
            try:
                response = self.session.post(f"{self.rest}/v1/submissions/kill/{handle.cluster_id}", timeout=HTTP_TIMEOUT)
                if response.ok and response.json().get("success") is not False:
                    return
            except (requests.RequestException, ValueError):
                pass
        response = self.session.post(
            f"{self.ui}/driver/kill/", data={"id": handle.cluster_id, "terminate": "true"}, timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()

    def log_hint(self, handle: Handle, status: Status | None) -> str:
        where = status.driver_log_url if status and status.driver_log_url else f"the master's UI, {self.ui}"
        return f"the driver's log: {where}"


class MasterFields:
    """json's object hook for one parse of the master's status: a driver (the objects with a `worker`, which
    Spark always writes for one) becomes (id, state, worker) with its state and worker strings shared by all
    drivers; any other object keeps only MASTER_FIELDS."""

    def __init__(self) -> None:
        self.shared: dict[Any, Any] = {}

    def __call__(self, pairs: list[tuple[str, Any]]) -> Any:
        fields = {key: value for key, value in pairs if key in MASTER_FIELDS}
        if "worker" not in fields:
            return fields
        shared = self.shared
        state, worker = fields.get("state"), fields.get("worker")
        return fields.get("id"), shared.setdefault(state, state), shared.setdefault(worker, worker)
