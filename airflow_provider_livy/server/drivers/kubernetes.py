"""Kubernetes: driver pods followed through one pod list by label selector, killed by deleting the pod.

Every driver pod we submit carries the label LABEL=<the batch's tag> (set through
`spark.kubernetes.driver.label.*`), next to Spark's own `spark-role=driver` and
`spark-app-selector`. One `GET /api/v1/namespaces/<ns>/pods?labelSelector=spark-role=driver,LABEL`
lists them all. The API token is read from its file at each request (Kubernetes rotates it) and
never stored in a record or written to a log.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from airflow_provider_livy.protocol import DEAD, RUNNING, STARTING, SUCCESS
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.tracker import HTTP_TIMEOUT, Handle, Status, http_session

LABEL = "livy-app-tag"
SUBMITTED_RE = re.compile(r"(?:submission ID [^\s:]+:(\S+?) into Kubernetes|\bpod name: (\S+))")
PHASES = {"Pending": STARTING, "Running": RUNNING, "Succeeded": SUCCESS, "Failed": DEAD, "Unknown": RUNNING}


@dataclass
class KubernetesTracker:
    api: str  # e.g. https://kubernetes.default.svc
    namespace: str
    token_file: str = ""
    ca_file: str = ""
    session: requests.Session = field(default_factory=http_session, repr=False)
    finds_by_tag = True  # the label finds the pod even if spark-submit's output named none
    driver_env = "spark.kubernetes.driverEnv."

    @classmethod
    def from_config(cls, config: ServerConfig) -> KubernetesTracker:
        api = config.k8s_api_url or config.spark_master.removeprefix("k8s://") or "https://kubernetes.default.svc"
        if "://" not in api:
            api = f"https://{api}"
        return cls(api.rstrip("/"), config.k8s_namespace, config.k8s_token_file, config.k8s_ca_file)

    @property
    def coordinates(self) -> dict[str, Any]:
        return {"kind": "kubernetes", "api": self.api, "namespace": self.namespace}

    def submit_conf(self, tag: str) -> dict[str, str]:
        return {
            "spark.kubernetes.submission.waitAppCompletion": "false",
            "spark.kubernetes.namespace": self.namespace,
            f"spark.kubernetes.driver.label.{LABEL}": tag,
        }

    def submitted_id(self, line: str) -> str | None:
        match = SUBMITTED_RE.search(line)
        return (match.group(1) or match.group(2)) if match else None

    def poll(self, handles: Iterable[Handle]) -> dict[str, Status]:
        wanted = {h.tag for h in handles}
        body = self._request("GET", "pods", params={"labelSelector": f"spark-role=driver,{LABEL}"}).json()
        statuses = {}
        for pod in body.get("items") or ():
            meta = pod.get("metadata") or {}
            tag = (meta.get("labels") or {}).get(LABEL)
            if tag not in wanted:
                continue
            phase = str((pod.get("status") or {}).get("phase"))
            statuses[tag] = Status(
                state=PHASES.get(phase, RUNNING),
                detail=f"pod {phase}{_termination(pod)}",
                app_id=(meta.get("labels") or {}).get("spark-app-selector"),
            )
        return statuses

    def kill(self, handle: Handle) -> None:
        if handle.cluster_id == handle.tag:  # no pod name known: find it by its label
            pods = self._request("GET", "pods", params={"labelSelector": f"{LABEL}={handle.tag}"}).json().get("items") or []
            names = [(p.get("metadata") or {}).get("name") for p in pods]
        else:
            names = [handle.cluster_id]
        for name in filter(None, names):
            response = self._request("DELETE", f"pods/{urllib.parse.quote(name)}", allow=(404,))
            response.close()

    def _request(self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        headers = {}
        if self.token_file and os.path.isfile(self.token_file):
            with open(self.token_file) as handle:
                headers["Authorization"] = f"Bearer {handle.read().strip()}"
        verify: bool | str = self.ca_file if self.ca_file and os.path.isfile(self.ca_file) else True
        url = f"{self.api}/api/v1/namespaces/{urllib.parse.quote(self.namespace)}/{path}"
        response = self.session.request(method, url, headers=headers, verify=verify, timeout=HTTP_TIMEOUT, **kwargs)
        if response.status_code not in allow:
            response.raise_for_status()
        return response

    def driver_output(self, handle: Handle, status: Status) -> list[str]:
        return []  # the pod's log is served by the API; the log hint says how to read it

    def log_hint(self, handle: Handle, status: Status | None) -> str:
        pod = handle.cluster_id if handle.cluster_id != handle.tag else f"-l {LABEL}={handle.tag}"
        return f"the driver's log: `kubectl logs -n {self.namespace} {pod}`"


def _termination(pod: dict[str, Any]) -> str:
    """The driver container's exit code and reason, when the pod says."""
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        ended = ((container or {}).get("state") or {}).get("terminated")
        if ended:
            return f" (exit code {ended.get('exitCode')}, {ended.get('reason')})"
    return ""
