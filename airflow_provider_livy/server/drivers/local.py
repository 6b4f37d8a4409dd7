"""Drivers whose process runs on this host (spark-submit's supervisor): watched, read, stopped.

A watched driver's log file is read as it grows (each new line goes to the caller, which keeps a
tail), and its exit is noticed the moment it happens through a pidfd (drivers/exits.py), with a
poll every MONITOR_INTERVAL as a fallback. What the driver prints is read here for the facts it
names (application id, Spark UI, the cluster's id for a driver spark-submit handed over, whether
the driver started); what those facts mean for the session is the lifecycle's to decide.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_livy.protocol import RUNNING
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers import launcher, logs
from airflow_provider_livy.server.drivers.exits import ExitWatch
from airflow_provider_livy.server.drivers.tracker import Tracker

log = logging.getLogger(__name__)

MONITOR_INTERVAL = 0.2  # seconds between reads of the watched drivers' output
KILL_GRACE = 3.0  # SIGTERM, then SIGKILL after this long
GONE_POLL = 0.05  # seconds between checks that a process group is gone
UI_PROBE_INTERVAL = 1.0


class Driver(Protocol):
    """What this module reads and writes of a session (sessions.model.Session has these)."""

    id: int
    state: str
    app_tag: str
    pid: int | None
    pid_start: float | None
    child: bool
    log_offset: int
    app_id: str | None
    ui_url: str | None
    ui_probe_at: float
    cluster: dict[str, Any] | None
    cluster_id: str | None


@dataclass
class Facts:
    """What new driver output told: `changed` when a fact was learnt, `started` when the driver said it runs."""

    changed: bool = False
    started: bool = False


def read_facts(driver: Driver, lines: list[str], ui_host: str, submitted_id: Callable[[str], str | None] | None) -> Facts:
    """Learn the driver's facts from its new lines. `submitted_id`: the cluster's reading of spark-submit's
    output when the driver was handed to a cluster (then spark-submit's lines name only that id)."""
    facts = Facts()
    for line in lines:
        if submitted_id is not None:
            if driver.cluster_id is None and (found := submitted_id(line)):
                driver.cluster_id, facts.changed = found, True
            continue
        if driver.app_id is None and (match := launcher.APP_ID_RE.search(line)):
            driver.app_id, facts.changed = match.group(1), True
        if driver.ui_url is None:
            if match := launcher.UI_URL_RE.search(line):
                driver.ui_url, facts.changed = match.group(1), True
            elif match := launcher.UI_PORT_RE.search(line):
                driver.ui_url, facts.changed = f"http://{ui_host}:{match.group(1)}", True
        if launcher.DRIVER_STARTED_RE.search(line):
            facts.started = True
    return facts


@dataclass
class Watchers:
    """What LocalDrivers tells: `output(driver, lines)` the new complete log lines at each read, `exit(driver)`
    the end of the process (its output read to the last line first), `app_id(driver)` an app id learnt
    from the driver's UI (Spark 4 in local mode never prints it)."""

    output: Callable[[Any, list[str]], None]
    exit: Callable[[Any], None]
    app_id: Callable[[Any], None]


class LocalDrivers:
    """One family's spark-submit processes on this host (the driver itself, or in deploy mode cluster the
    submission that hands it over), from their start to their end."""

    def __init__(
        self, config: ServerConfig, files: logs.SessionFiles, tracker: Tracker | None, clock: Callable[[], float], tell: Watchers
    ) -> None:
        self.config = config
        self.files = files
        self.tracker = tracker  # deploy mode cluster: spark-submit hands the driver to this cluster
        self.spark_home = launcher.resolve_spark_home(config)
        self.clock = clock
        self.tell = tell
        self.watched: dict[int, Any] = {}  # id -> driver, while its process lives
        self.held: dict[int, int] = {}  # id -> our end of a held supervisor's pipe, until we say go or let it go
        self.exits: ExitWatch | None = None  # made on first use, on the event loop
        self._probes: set[asyncio.Task[None]] = set()

    def __contains__(self, driver_id: int) -> bool:
        return driver_id in self.watched

    def launch(self, driver: Driver, request: dict[str, Any], channel: dict[str, str], held: bool = False) -> None:
        """spark-submit for the request, under our supervisor, watched from now on; OSError when it cannot
        start. `channel`: the driver's own environment (an interactive session's REPL settings), which for a
        driver in a cluster goes there as Spark settings in a 0600 properties file, never on a command line.
        `held`: the supervisor starts nothing until `go` (a group's leader says go once its launch mark is stored)."""
        tracker = self.tracker
        env = launcher.spark_environment(request, cluster=tracker is not None)
        properties, driver_settings = None, {}
        if channel and tracker is not None:
            properties = self.files.properties(driver.id)
            driver_settings = {tracker.driver_env + key: value for key, value in channel.items()}
        else:
            env.update(channel)
        server_conf = tracker.submit_conf(driver.app_tag) if tracker else None
        command = launcher.build_command(self.spark_home, request, self.config, server_conf, properties)
        if tracker is not None:
            driver.cluster = tracker.coordinates
        try:
            env.update(launcher.kerberos_environment(self.config, request.get("proxyUser"), self.files.directory))
            if properties is not None:
                launcher.write_properties_file(properties, self.spark_home, env, driver_settings)
            pid = self._start(driver.id, command, env, held)
        except OSError:
            if properties is not None:
                properties.unlink(missing_ok=True)
            raise
        driver.pid, driver.child = pid, True
        driver.pid_start = launcher.process_start_time(pid)
        self.watch(driver)

    def _start(self, driver_id: int, command: list[str], env: dict[str, str], held: bool) -> int:
        log_path, exit_path = self.files.log(driver_id), self.files.exit_code(driver_id)
        if not held:
            return launcher.start(command, log_path, exit_path, env)
        theirs, ours = os.pipe()  # the supervisor reads, we write
        try:
            pid = launcher.start(command, log_path, exit_path, env, held=theirs)
        except OSError:
            os.close(ours)
            raise
        finally:
            os.close(theirs)
        self.held[driver_id] = ours
        return pid

    def go(self, driver: Driver) -> bool:
        """Tell a held supervisor to start the driver; False if it is gone already (it then started nothing)."""
        ours = self.held.pop(driver.id, None)
        if ours is None:
            return False
        try:
            os.write(ours, b"g")
        except BrokenPipeError:
            return False
        finally:
            os.close(ours)
        return True

    def let_go(self, driver_id: int) -> None:
        """A held supervisor is never told to start: it records NOT_STARTED and ends."""
        if (ours := self.held.pop(driver_id, None)) is not None:
            os.close(ours)

    def watch(self, driver: Driver) -> None:
        """Follow a live driver; a pidfd tells us the moment it exits (Linux), the monitor polls too."""
        self.watched[driver.id] = driver
        if driver.pid is None or not ExitWatch.available():
            return
        if self.exits is None:
            self.exits = ExitWatch(asyncio.get_running_loop(), self._exited)
        self.exits.add(driver.pid, driver.id)

    def unwatch(self, driver_id: int) -> None:
        self.watched.pop(driver_id, None)
        self.let_go(driver_id)

    def _exited(self, driver_id: int) -> None:
        if (driver := self.watched.get(driver_id)) is not None:
            self.check(driver)

    async def monitor(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            for driver in list(self.watched.values()):
                try:
                    self.check(driver)
                except Exception:
                    log.exception("watching driver %s failed", driver.id)

    def check(self, driver: Driver) -> None:
        """Read new driver output and notice an exit."""
        if driver.id not in self.watched:
            return
        self.read_output(driver)
        if self._reaped(driver) if driver.child else not launcher.is_alive(driver.pid or -1, driver.pid_start):
            self.read_output(driver)
            self.watched.pop(driver.id, None)
            self.tell.exit(driver)
        elif driver.state == RUNNING and driver.app_id is None and driver.ui_url and self.clock() >= driver.ui_probe_at:
            driver.ui_probe_at = self.clock() + UI_PROBE_INTERVAL
            task = asyncio.create_task(self._probe_app_id(driver))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    def read_output(self, driver: Driver) -> None:
        lines, driver.log_offset = logs.read_new(self.files.log(driver.id), driver.log_offset)
        if lines:
            self.tell.output(driver, lines)

    async def _probe_app_id(self, driver: Driver) -> None:
        """Spark 4 in local mode never prints its application id; its UI's REST API knows it."""
        try:
            body = await asyncio.to_thread(_http_get_json, f"{driver.ui_url}/api/v1/applications")
        except (OSError, ValueError):
            return
        found = isinstance(body, list) and body and isinstance(body[0], dict) and body[0].get("id")
        if found and driver.app_id is None:
            driver.app_id = str(body[0]["id"])
            self.tell.app_id(driver)

    @staticmethod
    def _reaped(driver: Driver) -> bool:
        """Whether our child supervisor has ended; once reaped it is no longer our child to wait for."""
        driver.child = not launcher.reap(driver.pid or -1)
        return not driver.child

    def running(self, driver: Driver) -> bool:
        """Whether any process of the driver's group still runs."""
        if driver.child:  # reap the supervisor, else its zombie keeps the group "alive"
            self._reaped(driver)
        return launcher.group_alive(driver.pid or -1)

    async def wait_gone(self, driver: Driver, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running(driver) and time.monotonic() < deadline:
            await asyncio.sleep(GONE_POLL)

    async def kill(self, driver: Driver) -> None:
        """SIGTERM to the driver's process group, SIGKILL after a grace period; returns once it is gone,
        its last output read and its exit noticed."""
        pgid = driver.pid or -1
        self.let_go(driver.id)  # a held one ends at once, having started nothing
        launcher.signal_group(pgid, signal.SIGTERM)
        await self.wait_gone(driver, KILL_GRACE)
        if self.running(driver):
            launcher.signal_group(pgid, signal.SIGKILL)
            while self.running(driver):
                await asyncio.sleep(GONE_POLL)
        self.check(driver)

    def close(self) -> None:
        for driver_id in list(self.held):
            self.let_go(driver_id)
        if self.exits is not None:
            self.exits.close()


def _http_get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - URL built from the driver's own UI address
        return json.loads(response.read())
