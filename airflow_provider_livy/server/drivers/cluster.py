"""Drivers that run in a cluster (deploy mode cluster): handed over by spark-submit, then followed.

spark-submit is told not to wait for the app (its "wait for completion" setting off), prints the
cluster's id for the driver and exits, so no JVM per running job stays on the server's host. From
then on a tracker follows every driver of one cluster with ONE status request per poll interval
(standalone master JSON, YARN's apps listing by tag, a Kubernetes pod list by label), not a
process, thread or request per app.

What a tracker is lives in drivers/tracker.py, one per kind of cluster beside it (standalone.py,
yarn.py, kubernetes.py); here: which tracker a config or a store record names, and the Follower that
polls them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from airflow_provider_livy.protocol import TERMINAL_STATES
from airflow_provider_livy.server import heap
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.kubernetes import KubernetesTracker
from airflow_provider_livy.server.drivers.standalone import StandaloneTracker
from airflow_provider_livy.server.drivers.tracker import Handle, Status, Tracker
from airflow_provider_livy.server.drivers.yarn import YarnTracker

log = logging.getLogger(__name__)

# Drivers in one poll from which the memory its parse freed is handed back to the OS at once: glibc raises its
# mmap threshold after a big buffer is freed, so the next poll's 2.5 MB answer and its 10,000-entry tables land
# on the heap too; untrimmed, a server following 10,000 drivers held ~2.8 MB of a poll's garbage (bench_cluster.py).
TRIM_AFTER = 1000
GONE_AFTER_MISSES = 2  # polls in a row without the driver before it counts as unknown to the cluster
Key = Hashable  # what the caller follows a driver for: a batch id; an interactive session ("interactive", id)


def tracker_for_config(config: ServerConfig) -> Tracker | None:
    """The tracker of the configured cluster in cluster deploy mode; None when the driver runs here."""
    if not config.cluster_mode:
        return None
    master = config.spark_master
    if master.startswith("spark://"):
        return StandaloneTracker.from_config(config)
    if master.startswith("yarn"):
        return YarnTracker.from_config(config)
    if master.startswith("k8s://"):
        return KubernetesTracker.from_config(config)
    return None


def tracker_from_coordinates(coordinates: dict[str, Any], config: ServerConfig) -> Tracker:
    """The tracker a store record names: the cluster the driver was handed to, whatever this server's config says.

    Secrets (a Kubernetes token) are never in a record; they come from this server's config.
    """
    kind = coordinates.get("kind")
    if kind == "standalone":
        return StandaloneTracker(str(coordinates["ui"]), str(coordinates.get("rest") or ""))
    if kind == "yarn":
        return YarnTracker(tuple(str(a) for a in coordinates["rm"]))
    if kind == "kubernetes":
        api, namespace = str(coordinates["api"]), str(coordinates["namespace"])
        return KubernetesTracker(api, namespace, config.k8s_token_file, config.k8s_ca_file)
    raise ValueError(f"unknown cluster kind {kind!r}")


def valid_coordinates(value: Any) -> bool:
    """What recovery accepts as a record's `cluster` field."""
    if not isinstance(value, dict):
        return False
    needed = {"standalone": ("ui",), "yarn": ("rm",), "kubernetes": ("api", "namespace")}.get(value.get("kind"))
    return needed is not None and all(key in value for key in needed)


def find_submitted_id(tracker: Tracker, log_path: Path) -> str | None:
    """The id spark-submit printed, read back from the batch log (a restart after it exited unread)."""
    try:
        with open(log_path, errors="replace") as handle:
            for line in handle:
                if found := tracker.submitted_id(line):
                    return found
    except FileNotFoundError:
        pass
    return None


class Follower:
    """Every driver followed in a cluster, grouped by cluster; one poll per cluster per interval.

    `on_status(key, handle, status)` is called on the event loop after each poll for every followed
    driver whose status changed; `status` is None once the cluster no longer knows the driver. A
    driver that ended (or is unknown) is no longer followed when it is called.
    """

    def __init__(self, config: ServerConfig, on_status: Callable[[Key, Handle, Status | None], None]) -> None:
        self.config = config
        self.interval = max(0.1, config.cluster_poll_interval)
        self.on_status = on_status
        self._trackers: dict[str, Tracker] = {}  # by coordinates
        self._coordinates: dict[str, dict[str, Any]] = {}  # one object per cluster, for every record naming it
        # coordinates -> key -> handle; clusters are few, so finding a key's cluster is a short loop, and a
        # followed driver costs one dict entry, not two
        self._handles: dict[str, dict[Key, Handle]] = {}
        self._polls: dict[str, asyncio.Future[None]] = {}  # a poll under way per cluster, shared by who waits
        # Polls run in one thread of their own: a poll parses a status of every driver (10,000 -> ~10 MB for a
        # moment), and each thread that ever did has the C allocator keep that much for it (an arena per thread).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="livy-cluster-poll")

    def tracker(self, coordinates: dict[str, Any]) -> Tracker:
        name = _coordinates_key(coordinates)
        if name not in self._trackers:
            self._trackers[name] = tracker_from_coordinates(coordinates, self.config)
        return self._trackers[name]

    def shared(self, coordinates: dict[str, Any]) -> dict[str, Any]:
        """One coordinates object per cluster, for every batch in it (10,000 records parse into 10,000 copies;
        a tracker's `coordinates` property makes a new dict at each call)."""
        name = _coordinates_key(coordinates)
        if name not in self._coordinates:
            self._coordinates[name] = self.tracker(coordinates).coordinates
        return self._coordinates[name]

    def follow(self, key: Key, coordinates: dict[str, Any], handle: Handle) -> None:
        name = _coordinates_key(coordinates)
        self.tracker(coordinates)
        self.unfollow(key)
        self._handles.setdefault(name, {})[key] = handle

    def _cluster_of(self, key: Key) -> str | None:
        return next((name for name, handles in self._handles.items() if key in handles), None)

    def unfollow(self, key: Key) -> None:
        for handles in self._handles.values():
            handles.pop(key, None)

    def follows(self, key: Key) -> bool:
        return self._cluster_of(key) is not None

    def handle(self, key: Key) -> tuple[Tracker, Handle] | None:
        name = self._cluster_of(key)
        if name is None:
            return None
        return self._trackers[name], self._handles[name][key]

    def followed(self) -> list[Key]:
        return [key for handles in self._handles.values() for key in handles]

    def __len__(self) -> int:
        return sum(len(handles) for handles in self._handles.values())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.gather(*(self.poll(name) for name, handles in list(self._handles.items()) if handles))

    async def poll_for(self, key: Key) -> None:
        """Poll the cluster of one followed driver now (a kill waiting for its confirmation)."""
        if (name := self._cluster_of(key)) is not None:
            await self.poll(name)

    async def poll(self, name: str) -> None:
        """One request to the cluster; concurrent callers share the poll under way."""
        if (running := self._polls.get(name)) is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._polls[name] = future
        try:
            await self._poll_once(name)
        finally:
            del self._polls[name]
            future.set_result(None)

    async def _poll_once(self, name: str) -> None:
        following = self._handles.get(name, {})
        tracker, handles = self._trackers[name], dict(following)
        started = time.monotonic()
        try:
            statuses = await asyncio.get_running_loop().run_in_executor(self._executor, _poll, tracker, handles)
        except (OSError, ValueError, requests.RequestException) as err:
            # The cluster manager is down or restarting: say so, keep following, try again next interval.
            log.warning("polling %s for %d drivers failed: %s", name, len(handles), err)
            return
        log.debug("polled %s for %d drivers in %.3fs", name, len(handles), time.monotonic() - started)
        for key, handle in handles.items():
            if following.get(key) is not handle:
                continue  # unfollowed meanwhile
            status = statuses.get(handle.tag)
            if status is None:
                handle.misses += 1
                if handle.misses < GONE_AFTER_MISSES:
                    continue
            else:
                handle.misses = 0
                if status is handle.status or status == handle.status:
                    continue
                handle.status = status
            if status is None or status.state in TERMINAL_STATES:
                self.unfollow(key)
            try:
                self.on_status(key, handle, status)
            except Exception:
                log.exception("following driver %s (%s) failed", handle.cluster_id, handle.tag)


def _poll(tracker: Tracker, handles: dict[Key, Handle]) -> dict[str, Status]:
    """One poll, in the poll thread; after a big one, the C heap its parse freed goes back to the OS."""
    try:
        return tracker.poll(handles.values())
    finally:
        if len(handles) >= TRIM_AFTER and (trim := heap.glibc_trim()) is not None:
            trim()


def _coordinates_key(coordinates: dict[str, Any]) -> str:
    return ";".join(f"{k}={coordinates[k]}" for k in sorted(coordinates))
