"""A session whose driver spark-submit handed to a cluster (deploy mode cluster): followed there.

spark-submit names the driver and exits; from then on the cluster follower (drivers/cluster.py), one
for both families, polls each cluster once per interval, and what it says of a driver is read here
in the session's terms: its app id and URLs, its end (with its output where the cluster keeps it),
the confirmation of a kill. The lifecycle decides and records; this module only tells it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from airflow_provider_livy.protocol import DEAD, KILLED, RUNNING, SUCCESS, TERMINAL_STATES, Family
from airflow_provider_livy.server.drivers import cluster, launcher, logs
from airflow_provider_livy.server.sessions.contract import Lifecycle
from airflow_provider_livy.server.sessions.model import Session

CLUSTER_KILL_CONFIRM = 30.0  # how long a DELETE waits for the cluster to confirm a kill
CONFIRM_POLL = 0.25


class FamilyTraits(Protocol):
    """What the hand-over reads of the session's family (families.py)."""

    protocol: Family
    up_on_driver_start: bool  # a batch runs once the cluster says so; a session is up once its REPL calls back
    can_succeed: bool  # an interactive session's driver ending is its death, never a success


class HandOver:
    """One family's drivers in a cluster. `key(id)`: what the shared follower knows a driver by."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        follower: cluster.Follower,
        family: FamilyTraits,
        files: logs.SessionFiles,
        read_output: Callable[[Session], None],
    ) -> None:
        self.lifecycle = lifecycle
        self.follower = follower
        self.family = family
        self.files = files
        self.read_output = read_output  # the log's new lines, as for a local driver

    def key(self, session_id: int) -> cluster.Key:
        return (self.family.protocol.name, session_id)

    def follows(self, session: Session) -> bool:
        return self.follower.follows(self.key(session.id))

    def submitted(self, session: Session, code: int | None) -> bool:
        """spark-submit exited: True when it handed the driver over (now followed there) or ended the
        session for failing to name it; False when it never got there (it ends as a local driver does)."""
        tracker = self.follower.tracker(session.cluster or {})
        if session.cluster_id is None and tracker.finds_by_tag and (code == 0 or session.kill_requested):
            session.cluster_id = session.app_tag  # killed mid-submission, the app may be in the cluster: kill it there too
        if session.cluster_id is None or (code != 0 and not session.kill_requested):
            if code != 0 or session.kill_requested:
                return False
            self.lifecycle.note(session, "spark-submit exited without naming the driver it submitted: marked dead")
            self.lifecycle.finish(session, DEAD)
            return True
        session.pid = session.pid_start = None
        self.lifecycle.note(session, f"spark-submit handed the driver to the cluster as {session.cluster_id}; following it there")
        self.follow(session)
        self.lifecycle.persist(session)
        return True

    def follow(self, session: Session) -> None:
        """No tail in memory: the log grows only at the end (the driver's output), read from disk when viewed."""
        session.tail = None
        session.cluster = self.follower.shared(session.cluster or {})
        handle = cluster.Handle(session.app_tag, session.cluster_id or session.app_tag, session.created_at, app_id=session.app_id)
        self.follower.follow(self.key(session.id), session.cluster or {}, handle)

    def on_status(self, session_id: int, handle: cluster.Handle, status: cluster.Status | None) -> None:
        """What one poll of the cluster says about one driver, in the session's terms."""
        session = self.lifecycle.registry.sessions.get(session_id)
        if session is None or not session.active:
            return
        if status is None:
            if not session.kill_requested:  # a deleted pod is gone from the listing: that confirms the kill
                self.lifecycle.note(session, f"the cluster no longer knows driver {handle.cluster_id}: marked dead")
            self.lifecycle.finish(session, KILLED if session.kill_requested else DEAD)
            return
        changed = bool(status.app_id) and session.app_id != status.app_id  # the URLs come again with every poll
        for name in ("app_id", "ui_url", "driver_log_url"):
            if value := getattr(status, name):
                setattr(session, name, value)
        if status.state in TERMINAL_STATES:
            self.lifecycle.spawn(self._ended(session, handle, status))
        elif status.state == RUNNING and session.state != RUNNING and self.family.up_on_driver_start:
            self.lifecycle.mark_up(session, RUNNING)
        elif changed:
            self.lifecycle.persist(session)

    async def _ended(self, session: Session, handle: cluster.Handle, status: cluster.Status) -> None:
        """The driver ended in the cluster: its output where the cluster serves it, or where it lives, then the end."""
        tracker = self.follower.tracker(session.cluster or {})
        try:
            lines = await asyncio.to_thread(tracker.driver_output, handle, status)
        except Exception as err:  # the worker went away with the driver's output: the end still counts
            lines = [f"{logs.SERVER_PREFIX}could not read the driver's output: {err}"]
        lines.append(
            f"{logs.SERVER_PREFIX}driver {handle.cluster_id} ended in the cluster: {status.detail}; "
            f"{tracker.log_hint(handle, status)}"
        )
        if session.id not in self.lifecycle.registry.sessions or not session.active:
            return
        if (err := await asyncio.to_thread(logs.append_lines, self.files.log(session.id), lines)) is not None:
            self.lifecycle.note(session, f"could not write the driver's output to its log: {err}")
        self.read_output(session)
        if session.app_id is None:  # standalone: the driver names its app in its output
            found = (m.group(1) for line in lines if (m := launcher.APP_ID_RE.search(line)))
            session.app_id = next(found, handle.cluster_id)
        end = DEAD if not self.family.can_succeed and status.state == SUCCESS else status.state
        self.lifecycle.finish(session, KILLED if session.kill_requested else end)

    async def kill(self, session: Session) -> None:
        """Ask the cluster to kill the driver, then poll until it confirms (on_status then ends the session)."""
        found = self.follower.handle(self.key(session.id))
        if found is None:
            return
        tracker, handle = found
        try:
            await asyncio.to_thread(tracker.kill, handle)
        except Exception as err:
            self.lifecycle.note(session, f"asking the cluster to kill driver {handle.cluster_id} failed: {err}")
        deadline = time.monotonic() + CLUSTER_KILL_CONFIRM
        while session.active and time.monotonic() < deadline:
            await self.follower.poll_for(self.key(session.id))
            await asyncio.sleep(CONFIRM_POLL)
        if session.active:
            self.lifecycle.note(
                session,
                f"the cluster has not confirmed the kill of driver {handle.cluster_id} within {CLUSTER_KILL_CONFIRM:g}s",
            )
