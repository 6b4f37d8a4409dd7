"""Which of several servers on one ZooKeeper leads (recovery mode ha), and the fence that keeps a stale leader harmless.

Servers sharing a key prefix form one group. Each joins it with an ephemeral, sequential node
`/<prefix>/ha/candidates/c-<seq>` holding its advertised URL; the lowest sequence leads, the
others watch the list. ZooKeeper deletes a candidate when its session ends (the process died, or
was cut off longer than the session timeout), so the next in line takes over within that time.

Taking over bumps the epoch node `/<prefix>/ha/epoch` in a transaction that also checks the new
leader's own candidate node. From then on every write the leader makes carries a `check` on the
epoch's version and on its candidate node (server.fence): a leader paused past its session and
woken after another took over has each write refused by ZooKeeper, and steps down on the first.

kazoo's `Election` and `Lock` recipes give no such fence (`Lock.is_acquired` stays true after the
session is lost), hence this module. Connection states as kazoo reports them:
- SUSPENDED: the connection dropped; the session may still be alive. Side effects stop at once
  (`leading` turns false, the fence is held) until the session is confirmed or lost.
- CONNECTED again with the same session: leadership is re-checked (candidate node present,
  epoch unchanged) before the fence is armed again.
- LOST: the session expired, its candidate is gone: step down, then join again as a standby.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kazoo.client import KazooState
from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

from airflow_provider_livy.server.fence import Fence, failures_of
from airflow_provider_livy.zookeeper_auth import ZooKeeperAuth, new_client

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
RECHECK_INTERVAL = 1.0  # the election loop looks again at least this often, watches or not
RETRY_DELAY = 0.2  # after a failed ZooKeeper call inside the loop


@dataclass(frozen=True)
class Role:
    """What a server is in its group now; `leader` is the leading server's advertised URL, if one leads."""

    leading: bool
    leader: str | None
    epoch: int  # the epoch this server leads in; 0 for a standby


def ha_root(prefix: str) -> str:
    return "/" + prefix.strip("/") + "/ha"


def _sequence(name: str) -> int:
    return int(name.rsplit("-", 1)[-1])


class Leadership:
    """This server's place in its group: contends, takes over, steps down, and keeps the fence in step.

    `on_change(role)` is called from the election thread after each change of role (take it to
    the event loop from there). `takeovers` counts the times this server took the lead. `auth` is the
    store's ZooKeeper identity (zookeeper_auth): the servers of a group share it, and the fence's checks
    need read access to the election's znodes.
    """

    def __init__(
        self,
        hosts: str,
        prefix: str,
        url: str,
        session_timeout: float = 10.0,
        on_change: Callable[[Role], None] | None = None,
        *,
        auth: ZooKeeperAuth | None = None,
    ) -> None:
        root = ha_root(prefix)
        self.candidates_path = f"{root}/candidates"
        self.epoch_path = f"{root}/epoch"
        self.url = url
        self.hosts = hosts
        self.fence = Fence()
        self.fence.when_refused(self._refused)
        self.takeovers = 0
        self._on_change = on_change
        self._role = Role(False, None, 0)
        self._candidate: str | None = None  # our candidate node's name
        self._epoch_version = -1  # the epoch node's version our takeover left
        self._checks: tuple[tuple[str, int], ...] = ()  # what the fence checks while we lead
        self._session_lost = False
        self._suspended = False
        self._stopping = False
        self._wake = threading.Event()
        self.placed = threading.Event()  # set once this server knows its role (it joined and looked)
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)
        self.client = new_client(  # with an identity, the election's znodes get the store's creator-only ACL
            hosts,
            auth,
            timeout=session_timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
            command_retry=KazooRetry(max_tries=3, delay=0.1, backoff=2, max_delay=1.0),
        )

    # --- life -----------------------------------------------------------------------------
    def start(self, connect_timeout: float = CONNECT_TIMEOUT) -> Leadership:
        try:
            self.client.start(timeout=connect_timeout)
        except KazooTimeoutError:
            self.client.close()
            raise ConnectionError(
                f"ZooKeeper at {self.hosts} is unreachable (no connection within {connect_timeout:g}s)"
            ) from None
        self.client.ensure_path(self.candidates_path)
        with contextlib.suppress(NodeExistsError):
            self.client.create(self.epoch_path, b"0")
        self.client.add_listener(self._on_state)
        self._thread.start()
        self._wake.set()
        return self

    def stop(self) -> None:
        """Hand over at once: writes stop, the candidate goes (the next in line takes over), then the connection."""
        self._stopping = True
        self.fence.disarm()
        self._set_role(Role(False, None, 0))
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._candidate is not None:
            with contextlib.suppress(KazooException, KazooTimeoutError):
                self.client.delete(f"{self.candidates_path}/{self._candidate}")
        with contextlib.suppress(Exception):
            self.client.stop()
            self.client.close()

    # --- what the server asks ---------------------------------------------------------------
    @property
    def role(self) -> Role:
        return self._role

    @property
    def stopping(self) -> bool:
        """`stop` was called: a change of role now is the handover, not a loss."""
        return self._stopping

    @property
    def leading(self) -> bool:
        """True only while this server leads and its ZooKeeper connection is sound: side effects may happen."""
        return self._role.leading and self.fence.armed

    # --- kazoo's threads ------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        """From kazoo's connection thread: flags only, never a blocking call."""
        if state == KazooState.SUSPENDED:
            self._suspended = True
            self.fence.hold()
        elif state == KazooState.LOST:
            self._session_lost = True
            self.fence.disarm()
        else:
            self._suspended = False
        self._wake.set()

    def _poke(self, _event: object = None) -> None:
        self._wake.set()

    def _refused(self) -> None:
        """ZooKeeper refused a fenced write: another server took over. Step down before anything else happens."""
        self.fence.disarm()
        self._wake.set()

    # --- the election loop ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(RECHECK_INTERVAL)
            self._wake.clear()
            if self._stopping:
                break
            if self._suspended or self.client.state != KazooState.CONNECTED:
                continue
            try:
                self._look()
                self.placed.set()
            except (KazooException, KazooTimeoutError) as err:
                log.warning("leadership: ZooKeeper call failed (%r); looking again", err)
                time.sleep(RETRY_DELAY)
                self._wake.set()

    def _look(self) -> None:
        if self._session_lost:
            self._session_lost = False
            self._candidate = None
            self._step_down("its ZooKeeper session expired")
        if self._candidate is None:
            path = self.client.create(f"{self.candidates_path}/c-", self.url.encode(), ephemeral=True, sequence=True)
            self._candidate = path.rsplit("/", 1)[-1]
        children = sorted(self.client.get_children(self.candidates_path, watch=self._poke), key=_sequence)
        if self._candidate not in children:  # deleted by someone else, or our session was replaced
            self._candidate = None
            self._step_down("its election node is gone")
            self._wake.set()
            return
        first = children[0]
        if first != self._candidate:
            if self._role.leading:
                self._step_down("another server leads")
            self._set_role(Role(False, self._url_of(first), 0))
            return
        if not self._role.leading:
            self._take_over()
        else:
            self._confirm()

    def _url_of(self, name: str) -> str | None:
        try:
            data, _ = self.client.get(f"{self.candidates_path}/{name}", watch=self._poke)
        except NoNodeError:
            self._wake.set()  # it just left: look again
            return None
        return data.decode() or None

    def _take_over(self) -> None:
        data, stat = self.client.get(self.epoch_path)
        epoch = int(data or b"0") + 1
        mine = f"{self.candidates_path}/{self._candidate}"
        transaction = self.client.transaction()
        transaction.check(mine, 0)
        transaction.set_data(self.epoch_path, str(epoch).encode(), version=stat.version)
        failures = failures_of(transaction.commit())
        if failures:
            log.info("leadership: takeover raced (%r); looking again", failures[0])
            self._wake.set()
            return
        self._epoch_version = stat.version + 1
        self.client.exists(self.epoch_path, watch=self._poke)
        self._checks = ((self.epoch_path, self._epoch_version), (mine, 0))
        self.fence.arm(self._checks)
        self.takeovers += 1
        log.info("leadership: %s leads, epoch %d", self.url, epoch)
        self._set_role(Role(True, self.url, epoch))

    def _confirm(self) -> None:
        """Still first in line: the epoch must be ours too (a refused write, a resumed session, or just a look)."""
        stat = self.client.exists(self.epoch_path, watch=self._poke)
        if stat is None or stat.version != self._epoch_version:
            self._step_down("the epoch moved on", rejoin=True)
            return
        if not self.fence.armed:
            self.fence.arm(self._checks)
            log.info("leadership: %s still leads after the connection came back", self.url)

    def _step_down(self, why: str, rejoin: bool = False) -> None:
        self.fence.disarm()
        if self._role.leading:
            log.warning("leadership: %s steps down: %s", self.url, why)
            self._set_role(Role(False, None, 0))
        if rejoin and self._candidate is not None:
            # Our node would keep us first in line: leave, and join again at the back.
            with contextlib.suppress(NoNodeError):
                self.client.delete(f"{self.candidates_path}/{self._candidate}")
            self._candidate = None
            self._wake.set()

    def _set_role(self, role: Role) -> None:
        if role == self._role:
            return
        self._role = role
        if self._on_change is not None:
            try:
                self._on_change(role)
            except Exception:
                log.exception("leadership: the role-change callback failed")
