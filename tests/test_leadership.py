"""One fenced leader per key prefix: real ZooKeeper, contenders in processes of their own (tests/ha_contender.py).

Each contender creates records through a fenced store while it believes it leads, so what
ZooKeeper holds afterwards shows whether any write of a superseded leader landed: records carry
the writer's epoch, ids come from ZooKeeper's counter, and ZooKeeper's own modification times
order them against the takeover.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from airflow_provider_livy.server.fence import Fence
from airflow_provider_livy.server.leadership import Leadership, Role, ha_root
from airflow_provider_livy.server.stores.base import StoreUnavailable
from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore
from tests.ha_contender import Contender, first_to_lead
from tests.zookeeper import ZooKeeperServer

FencedStore = tuple[ZooKeeperStore, Fence, str, dict[int, dict[str, Any]]]
SESSION_TIMEOUT = 2.0  # ZooKeeper's floor is two ticks (tests/zookeeper.py: 500 ms)


@pytest.fixture
def group(zookeeper: ZooKeeperServer, zk_prefix: str) -> Iterator[Callable[[str], Contender]]:
    started: list[Contender] = []

    def start(name: str) -> Contender:
        started.append(contender := Contender(zookeeper.hosts, zk_prefix, name, SESSION_TIMEOUT))
        return contender

    yield start
    for contender in started:
        contender.stop()


@pytest.fixture
def zk(zookeeper: ZooKeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def stored(zk: KazooClient, prefix: str) -> dict[int, tuple[dict[str, Any], float]]:
    """Every record in ZooKeeper with ZooKeeper's modification time (ms)."""
    path = f"/{prefix}/v1/batch"
    found = {}
    for name in zk.get_children(path):
        if name.isdigit():
            data, stat = zk.get(f"{path}/{name}")
            found[int(name)] = (json.loads(data), stat.mtime)
    return found


def takeover_mtime(zk: KazooClient, prefix: str) -> float:
    return zk.get(f"{ha_root(prefix)}/epoch")[1].mtime


def check_store(zk: KazooClient, prefix: str, contenders: list[Contender]) -> dict[int, tuple[dict[str, Any], float]]:
    """Every acknowledged create is in ZooKeeper as acknowledged; in id order the epochs never go back (one writer at a
    time, ids never reused)."""
    acked = [(contender.url, ack) for contender in contenders for ack in contender.acks()]  # before the read: more may come
    records = stored(zk, prefix)
    for url, ack in acked:
        record, _ = records[ack["id"]]
        assert (record["writer"], record["epoch"]) == (url, ack["epoch"])
    epochs = [records[i][0]["epoch"] for i in sorted(records)]
    assert epochs == sorted(epochs)
    counter = json.loads(zk.get(f"/{prefix}/v1/batch/state")[0])["nextSessionId"]
    assert counter > max(records, default=-1)
    return records


def the_leader(contenders: list[Contender], timeout: float) -> Contender:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leading = [c for c in contenders if c.leading]
        if len(leading) == 1 and all(c.events and any(e["event"] == "role" for e in c.events) for c in contenders):
            return leading[0]
        time.sleep(0.05)
    raise AssertionError(f"no single leader: {[(c.url, c.leading) for c in contenders]}")


@pytest.mark.parametrize("size", [2, 3])
def test_kill_9_of_the_leader_hands_over_within_the_session_timeout(group, zk, zk_prefix, size):
    contenders = [group(f"s{n}") for n in range(size)]
    leader = the_leader(contenders, 30)
    for other in contenders:
        if other is not leader:
            other.wait_for(lambda e: e["event"] == "role" and e["leader"] == leader.url, 10)
    epochs = [leader.events[-1]["epoch"]]
    alive = list(contenders)
    for _ in range(size - 1):
        leader.wait_for(lambda e: e["event"] == "ack", 10)
        killed = time.time()
        leader.proc.kill()
        leader.proc.wait()
        alive.remove(leader)
        took = first_to_lead(alive, killed, SESSION_TIMEOUT + 5)
        assert took["at"] - killed <= SESSION_TIMEOUT + 2
        leader = the_leader(alive, 5)
        epochs.append(took["epoch"])
    leader.wait_for(lambda e: e["event"] == "ack", 10)
    assert epochs == list(range(epochs[0], epochs[0] + size))
    records = check_store(zk, zk_prefix, contenders)
    assert {record["epoch"] for record, _ in records.values()} == set(epochs)


def test_a_paused_leader_writes_nothing_once_superseded_and_steps_down(group, zk, zk_prefix):
    first = group("first")
    first.leads(30)
    first.wait_for(lambda e: e["event"] == "ack", 10)
    second = group("second")
    second.wait_for(lambda e: e["event"] == "role" and e["leader"] == first.url, 10)
    old_epoch = first.events[-1]["epoch"] if first.events[-1]["event"] == "role" else first.acks()[-1]["epoch"]
    os.kill(first.proc.pid, signal.SIGSTOP)
    paused = time.time()
    took = second.leads(SESSION_TIMEOUT + 5, after=paused)
    assert took["at"] - paused <= SESSION_TIMEOUT + 2
    second.wait_for(lambda e: e["event"] == "ack", 10, after=took["at"])
    resumed = time.time()
    os.kill(first.proc.pid, signal.SIGCONT)
    first.wait_for(lambda e: e["event"] == "role" and not e["leading"], 5, after=resumed)
    first.wait_for(lambda e: e["event"] == "role" and e["leader"] == second.url, 5, after=resumed)
    time.sleep(0.3)  # the second keeps writing meanwhile
    records = check_store(zk, zk_prefix, [first, second])
    takeover = takeover_mtime(zk, zk_prefix)
    late = [i for i, (record, mtime) in records.items() if record["epoch"] == old_epoch and mtime >= takeover]
    assert late == []
    assert {record["epoch"] for record, _ in records.values()} == {old_epoch, took["epoch"]}
    # An answer read after waking is for a write ZooKeeper applied before the takeover (sent just before the pause).
    assert all(records[e["id"]][1] < takeover for e in first.acks() if e["at"] >= resumed)
    tried = [e for e in first.events if e["event"] == "failed" and e["at"] >= resumed]
    assert tried, "the woken leader tried no write before it stepped down"
    assert tried[-1]["refused"] >= 1  # counted: by ZooKeeper's check, or locally once it knew
    assert second.leading


def test_clean_stop_hands_over_within_a_second(group, zk, zk_prefix):
    first = group("first")
    first.leads(30)
    second = group("second")
    second.wait_for(lambda e: e["event"] == "role" and e["leader"] == first.url, 10)
    first.wait_for(lambda e: e["event"] == "ack", 10)
    asked = time.time()
    first.proc.send_signal(signal.SIGTERM)
    took = second.leads(5, after=asked)
    assert took["at"] - asked <= 1.0
    first.wait_for(lambda e: e["event"] == "released", 5)
    assert first.proc.wait(5) == 0
    second.wait_for(lambda e: e["event"] == "ack", 10, after=took["at"])
    check_store(zk, zk_prefix, [first, second])


# --- in this process: the fence through the store, and a session expiring under a running server ---


@pytest.fixture
def fenced_store(zookeeper: ZooKeeperServer, zk_prefix: str, zk: KazooClient) -> Iterator[FencedStore]:
    """A store whose fence is one node's version, as a takeover leaves the epoch node; `held` is its memory."""
    token = f"/{zk_prefix}/token"
    zk.create(token, b"1", makepath=True)
    fence = Fence()
    fence.arm([(token, 0)])
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix, fence=fence)
    held: dict[int, dict[str, Any]] = {}
    store.bind(held.get, lambda: max(held, default=-1) + 1)
    yield store, fence, token, held
    store.close()


def record(batch_id: int, state: str = "running") -> dict[str, Any]:
    return {"id": batch_id, "createdAt": 1000.0 + batch_id, "state": state}


def test_the_fence_makes_zookeeper_refuse_a_superseded_leaders_writes(fenced_store, zk, zk_prefix):
    async def scenario() -> None:
        store, fence, token, held = fenced_store
        held.update({n: record(n) for n in range(3)})
        lost: list[bool] = []
        fence.when_refused(lambda: lost.append(True))
        for n in range(3):
            await store.save(held[n], n + 1)
        zk.set(token, b"2")  # another server took over; this one has not heard of it
        held[0] = record(0, "success")
        held[3] = record(3)
        with pytest.raises(StoreUnavailable, match="another server leads"):
            await store.save(held[3], 4)
        await store.save(held[0])  # a state change: refused too, and not retried
        await store.save_many([held[1], held[2]])
        with pytest.raises(StoreUnavailable, match="refused the removal"):  # a DELETE answers 503
            await store.remove([1])
        assert fence.refused == 4
        assert len(lost) == 4
        records = stored(zk, zk_prefix)
        assert {i: r["state"] for i, (r, _) in records.items()} == {0: "running", 1: "running", 2: "running"}
        assert json.loads(zk.get(f"/{zk_prefix}/v1/batch/state")[0])["nextSessionId"] == 3
        assert sorted(zk.get_children(f"/{zk_prefix}/v1/batch-index")) == sorted(f"{n}_{1000000 + n * 1000}_" for n in range(3))
        assert not store._dirty  # a refused write is dropped: the new leader has its own view

    asyncio.run(scenario())


def test_the_fence_checks_under_the_stores_chroot_and_a_new_arming_replaces_its_checks(zookeeper, zk_prefix, zk):
    """The checks as sent are built once per arming: with the connect string's chroot in their paths, and anew
    when the fence is armed again with other checks."""
    token, records = f"/{zk_prefix}/token", f"/{zk_prefix}/livy/v1/batch"
    zk.create(token, b"1", makepath=True)
    fence = Fence()
    fence.arm([("/token", 0)])  # as the store's client sees it, under the chroot
    store = ZooKeeperStore(f"{zookeeper.hosts}/{zk_prefix}", "livy", fence=fence)

    async def scenario() -> None:
        await store.save(record(0), 1)
        assert zk.exists(f"{records}/0") is not None
        await store.remove([0])
        assert zk.exists(f"{records}/0") is None
        zk.set(token, b"2")  # the epoch moved: this server took over again, at the new version
        fence.arm([("/token", 1)])
        await store.save(record(1), 2)  # the checks built at the first arming would be refused now
        assert zk.exists(f"{records}/1") is not None
        fence.arm([("/token", 0)])  # a stale arming: its checks are sent, and refused
        with pytest.raises(StoreUnavailable, match="another server leads"):
            await store.save(record(2), 3)
        with pytest.raises(StoreUnavailable, match="refused the removal"):
            await store.remove([1])
        assert sorted(zk.get_children(records)) == ["1", "state"] and fence.refused == 2

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_a_disarmed_fence_refuses_without_asking_zookeeper(fenced_store, zk, zk_prefix):
    async def scenario() -> None:
        store, fence, _, held = fenced_store
        held[0] = record(0)
        fence.disarm()
        with pytest.raises(StoreUnavailable, match="does not lead"):
            await store.save(held[0], 1)
        with pytest.raises(StoreUnavailable, match="does not lead"):
            await store.remove([0])
        assert fence.refused == 2
        assert stored(zk, zk_prefix) == {}

    asyncio.run(scenario())


def test_a_held_fence_keeps_writes_until_leadership_is_confirmed(fenced_store, zk, zk_prefix):
    async def scenario() -> None:
        store, fence, token, held = fenced_store
        held[0] = record(0)
        await store.save(held[0], 1)
        fence.hold()  # the connection is suspended
        held[0] = record(0, "success")
        await store.save(held[0])
        with pytest.raises(StoreUnavailable, match="suspended"):
            await store.save(record(1), 2)
        assert stored(zk, zk_prefix)[0][0]["state"] == "running"
        fence.arm([(token, 0)])  # the same leadership confirmed: what waited is written
        deadline = time.monotonic() + 5
        while stored(zk, zk_prefix)[0][0]["state"] != "success":
            assert time.monotonic() < deadline, "the held write was never made"
            await asyncio.sleep(0.05)
        assert fence.refused == 0

    asyncio.run(scenario())


def expire_session(hosts: str, leadership: Leadership) -> None:
    """End a live process's ZooKeeper session from outside, as the server does after a partition:
    a second client joins the same session and closes it."""
    session_id, password = leadership.client.client_id
    other = KazooClient(hosts=hosts, client_id=(session_id, password))
    other.start(timeout=10)
    other.stop()
    other.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, what
        time.sleep(0.02)
    return time.monotonic() - start


def test_session_expiry_while_running_steps_down_and_the_other_takes_over(zookeeper, zk_prefix):
    roles: dict[str, list[Role]] = {"a": [], "b": []}
    a = Leadership(zookeeper.hosts, zk_prefix, "http://a", SESSION_TIMEOUT, on_change=roles["a"].append).start()
    try:
        wait_until(lambda: a.leading, 10, "a never led")
        b = Leadership(zookeeper.hosts, zk_prefix, "http://b", SESSION_TIMEOUT, on_change=roles["b"].append).start()
        try:
            wait_until(lambda: b.role.leader == "http://a", 10, "b never saw a lead")
            epoch = a.role.epoch
            expire_session(zookeeper.hosts, a)
            took = wait_until(lambda: b.leading, SESSION_TIMEOUT + 2, "b did not take over")
            assert b.role == Role(True, "http://b", epoch + 1)
            wait_until(lambda: a.role == Role(False, "http://b", 0), 5, "a did not step down to a standby of b")
            assert not a.leading and not a.fence.armed
            assert Role(False, None, 0) in roles["a"]  # stepped down before it learned who leads
            assert (a.takeovers, b.takeovers) == (1, 1)
            assert took < 1.0  # an expired session's node goes at once: no session timeout to wait for
        finally:
            b.stop()
        wait_until(lambda: a.leading, 5, "a did not lead again once b left")
        assert a.role.epoch == epoch + 2
    finally:
        a.stop()


def test_a_suspension_stops_side_effects_and_the_same_session_resumes(private_zookeeper, zk_prefix):
    hosts = private_zookeeper.hosts
    a = Leadership(hosts, zk_prefix, "http://a", 8.0).start()
    try:
        wait_until(lambda: a.leading, 10, "a never led")
        epoch = a.role.epoch
        private_zookeeper.stop()
        wait_until(lambda: not a.leading, 8, "a kept leading with ZooKeeper gone")
        assert a.role.leading and not a.fence.armed  # held: it may lead still, but does nothing meanwhile
        private_zookeeper.start()
        wait_until(lambda: a.leading, 20, "a did not resume")
        assert a.role.epoch == epoch and a.takeovers == 1
    finally:
        a.stop()


def test_with_an_identity_the_election_is_closed_to_others_and_fences_the_store(zookeeper, zk_prefix, zk):
    from kazoo.exceptions import NoAuthError

    from airflow_provider_livy.zookeeper_auth import is_open, parse_auth

    auth = parse_auth("digest:livy:group-secret")
    a = Leadership(zookeeper.hosts, zk_prefix, "http://a", SESSION_TIMEOUT, auth=auth).start()
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix, auth=auth, fence=a.fence)
    try:
        wait_until(lambda: a.leading, 10, "a never led")
        root = ha_root(zk_prefix)
        nodes = [root, f"{root}/epoch", f"{root}/candidates"]
        nodes += [f"{root}/candidates/{name}" for name in a.client.get_children(f"{root}/candidates")]
        assert not any(is_open(a.client.get_acls(node)[0]) for node in nodes)
        with pytest.raises(NoAuthError):
            zk.set(f"{root}/epoch", b"99")  # no identity: cannot fake a takeover
        held = {0: record(0)}
        store.bind(held.get, lambda: 1)

        async def create() -> None:
            await store.save(held[0], 1)  # the fence's checks read the election's znodes as the same identity

        asyncio.run(create())
        assert a.client.exists(f"/{zk_prefix}/v1/batch/0") is not None
        assert a.fence.refused == 0
        assert a.client.get(f"{root}/epoch")[0] == str(a.role.epoch).encode()
    finally:
        store.close()
        a.stop()


def test_stop_releases_at_once(zookeeper, zk_prefix):
    a = Leadership(zookeeper.hosts, zk_prefix, "http://a", SESSION_TIMEOUT).start()
    b = Leadership(zookeeper.hosts, zk_prefix, "http://b", SESSION_TIMEOUT).start()
    try:
        wait_until(lambda: a.leading and b.role.leader == "http://a", 10, "a never led")
        a.stop()
        assert not a.leading and a.fence.refused == 0
        took = wait_until(lambda: b.leading, 5, "b did not take over")
        assert took < 1.0
    finally:
        b.stop()
