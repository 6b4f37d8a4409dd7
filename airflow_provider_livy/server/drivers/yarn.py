"""YARN: apps followed through the ResourceManager's REST apps listing, killed by setting their state.

Every app we submit carries two tags (`spark.yarn.tags`): the batch's own and SERVER_TAG. One
`GET /ws/v1/cluster/apps?applicationTags=<SERVER_TAG>&startedTimeBegin=<oldest followed>` lists
them all; each is matched to its batch by id or tag. With ResourceManager HA, the addresses are
tried in turn (a standby redirects or refuses; the one that answered last is asked first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from airflow_provider_livy.protocol import DEAD, KILLED, RUNNING, STARTING, SUCCESS
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.tracker import HTTP_TIMEOUT, Handle, Status, http_session

SERVER_TAG = "livy-server"  # YARN lower-cases tags; ours are lower case already
SUBMITTED_RE = re.compile(r"\bSubmitted application (application_\d+_\d+)\b")
WINDOW_MARGIN_MS = 60_000  # clock skew between us and the ResourceManager
FINAL = {"SUCCEEDED": SUCCESS, "FAILED": DEAD, "KILLED": KILLED, "UNDEFINED": DEAD}


def yarn_state(app: dict[str, Any]) -> str:
    state = str(app.get("state"))
    if state == "RUNNING":
        return RUNNING
    if state in ("FINISHED", "FAILED", "KILLED"):
        return KILLED if state == "KILLED" else FINAL.get(str(app.get("finalStatus")), DEAD)
    return STARTING  # NEW, NEW_SAVING, SUBMITTED, ACCEPTED


@dataclass
class YarnTracker:
    addresses: tuple[str, ...]  # ResourceManager web addresses, e.g. http://rm1:8088
    session: requests.Session = field(default_factory=http_session, repr=False)
    finds_by_tag = True  # every app carries the batch's tag
    driver_env = "spark.yarn.appMasterEnv."  # the driver runs in the ApplicationMaster

    @classmethod
    def from_config(cls, config: ServerConfig) -> YarnTracker:
        addresses = config.yarn_rm_addresses or ("http://127.0.0.1:8088",)
        return cls(tuple(_with_scheme(a) for a in addresses))

    @property
    def coordinates(self) -> dict[str, Any]:
        return {"kind": "yarn", "rm": list(self.addresses)}

    def submit_conf(self, tag: str) -> dict[str, str]:
        return {"spark.yarn.submit.waitAppCompletion": "false", "spark.yarn.tags": f"{SERVER_TAG},{tag.lower()}"}

    def submitted_id(self, line: str) -> str | None:
        match = SUBMITTED_RE.search(line)
        return match.group(1) if match else None

    def poll(self, handles: Iterable[Handle]) -> dict[str, Status]:
        handles = list(handles)
        if not handles:
            return {}
        since = int(min(h.since for h in handles) * 1000) - WINDOW_MARGIN_MS
        body = self._request("GET", "/ws/v1/cluster/apps", params={"applicationTags": SERVER_TAG, "startedTimeBegin": since})
        apps = ((body or {}).get("apps") or {}).get("app") or []
        by_id = {app.get("id"): app for app in apps if isinstance(app, dict)}
        by_tag = {}
        for app in by_id.values():
            for tag in str(app.get("applicationTags") or "").split(","):
                by_tag[tag] = app
        statuses = {}
        for handle in handles:
            app = by_id.get(handle.cluster_id) or by_tag.get(handle.tag.lower())
            if app is None:
                continue
            statuses[handle.tag] = Status(
                state=yarn_state(app),
                detail=f"{app.get('state')} (final status {app.get('finalStatus')})",
                app_id=app.get("id"),
                ui_url=app.get("trackingUrl") or None,
                driver_log_url=app.get("amContainerLogs") or None,
            )
        return statuses

    def kill(self, handle: Handle) -> None:
        app_id = handle.cluster_id
        if not app_id.startswith("application_"):  # spark-submit never printed it: find the app by its tag
            found = self.poll([handle]).get(handle.tag)
            if found is None or not found.app_id:
                return  # not in the cluster: the next poll says it is gone
            app_id = found.app_id
        self._request("PUT", f"/ws/v1/cluster/apps/{app_id}/state", json={"state": "KILLED"})

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Ask each ResourceManager in turn until one answers; the one that did is asked first next time."""
        errors = []
        for address in self.addresses:
            try:
                response = self.session.request(method, address + path, timeout=HTTP_TIMEOUT, **kwargs)
                if response.status_code == 503 or b"standby" in response.content[:200].lower():
                    raise requests.ConnectionError(f"{address} is a standby ResourceManager")
                response.raise_for_status()
            except requests.RequestException as err:
                errors.append(f"{address}: {err}")
                continue
            if address != self.addresses[0]:
                self.addresses = (address, *(a for a in self.addresses if a != address))
            return response.json() if response.content else None
        raise requests.ConnectionError("no ResourceManager answered: " + "; ".join(errors))

    def driver_output(self, handle: Handle, status: Status) -> list[str]:
        return []  # YARN serves it (amContainerLogs, `yarn logs`); the log hint says where

    def log_hint(self, handle: Handle, status: Status | None) -> str:
        if status and status.driver_log_url:
            return f"the driver's log: {status.driver_log_url}"
        return f"the driver's log: `yarn logs -applicationId {handle.cluster_id}`"


def _with_scheme(address: str) -> str:
    return (address if "://" in address else f"http://{address}").rstrip("/")
