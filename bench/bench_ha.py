"""Benchmark: several servers on one ZooKeeper: what the fence costs, and how fast leadership moves.

(a) Fenced against unfenced writes through the ZooKeeper store, alternating rounds on one
ZooKeeper: the create rate (record, index entry and id counter in one transaction, as a POST
writes them, 64 in flight as from 64 clients) and the delete rate (one removal per DELETE, 64 in
flight). The fenced store's transactions carry the leader's two checks (server.fence), from a
real `Leadership` that leads its key prefix. Target: fenced >= 0.9x unfenced.

(b) Leadership moving between contender processes (tests/ha_contender.py, each creating records
through a fenced store while it leads), session timeout 10 s (the default): kill -9 of the leader
to another taking the lead, and SIGTERM of the leader (a clean stop) to another taking the lead.
Targets: session timeout + 2 s, and 1 s. These are the election's times alone.

(c) Two real livy-server processes in recovery mode ha on a store holding 40,000 finished records
(5,000 with --quick): GET /batches/{id}/state straight to the leader against the same through the
standby's proxy, alternating blocks, one keep-alive client (p50, p99); then kill -9 of the leader, and
SIGTERM of the leader, to the other answering GET /batches with every record (a new standby is
started before each). Targets: session timeout + 2 s, and 1 s.

(d) The standby's two answers side by side: three real livy-server processes on 2,000 finished records, the
leader, a standby that proxies (the default) and one with `livy.server.ha.standby = redirect`:
GET /batches/{id}/state straight to the leader, through the proxy, and through the redirect with the
client (requests) following the 307, one keep-alive client per route, in rotating blocks (p50, p99).

Run alone: .venv/bin/python -m bench.bench_ha [--quick] [--standby (part d only)]
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import requests

from bench.common import Row, free_port, median, say, spread, wait_until

IN_FLIGHT = 64
SESSION_TIMEOUT = 10.0


async def windowed(calls: list[Callable[[], Awaitable[None]]]) -> float:
    """Seconds to make every call with IN_FLIGHT awaiting at once."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[None]]) -> None:
        async with limit:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(one(call) for call in calls))
    return time.perf_counter() - start


def record(batch_id: int) -> dict:
    return {"id": batch_id, "createdAt": time.time(), "state": "running", "owner": "bench", "appTag": f"livy-batch-{batch_id}"}


async def create_then_delete(store, count: int, first_id: int) -> tuple[float, float]:
    """(creates/s, deletes/s) for `count` records; every call must succeed."""
    ids = range(first_id, first_id + count)
    seconds = await windowed([lambda i=i: store.save(record(i), i + 1) for i in ids])
    created = count / seconds
    seconds = await windowed([lambda i=i: store.remove([i]) for i in ids])
    assert not store._dirty, "a write failed during the benchmark"
    return created, count / seconds


def build_cost(fence, rounds: int) -> float:
    """Microseconds of this process's time to build and serialize one create's transaction (no ZooKeeper)."""
    from kazoo.client import KazooClient, TransactionRequest
    from kazoo.protocol.serialization import Transaction

    client = KazooClient(hosts="127.0.0.1:1")  # never started: only its chroot is read
    body = json.dumps(record(12345)).encode()
    start = time.perf_counter()
    for _ in range(rounds):
        transaction = TransactionRequest(client)
        if fence is not None:
            fence.guard(transaction)
        transaction.create("/livy/v1/batch/12345", body)
        transaction.create("/livy/v1/batch-index/12345_1000_")
        transaction.set_data("/livy/v1/batch/state", b'{"nextSessionId": 12346}')
        Transaction(transaction.operations).serialize()
    return (time.perf_counter() - start) / rounds * 1e6


def fence_rows(hosts: str, quick: bool) -> list[Row]:
    from airflow_provider_livy.server.leadership import Leadership
    from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

    count, rounds = (1000, 1) if quick else (3000, 10)
    fenced_prefix = f"bench-fenced-{uuid.uuid4().hex[:8]}"
    leadership = Leadership(hosts, fenced_prefix, "http://bench", SESSION_TIMEOUT).start()
    deadline = time.monotonic() + 30
    while not leadership.leading:
        assert time.monotonic() < deadline, "the benchmark's leadership never led"
        time.sleep(0.05)
    stores = {
        "unfenced": ZooKeeperStore(hosts, f"bench-plain-{uuid.uuid4().hex[:8]}"),
        "fenced": ZooKeeperStore(hosts, fenced_prefix, fence=leadership.fence),
    }
    rates: dict[str, dict[str, list[float]]] = {kind: {"create": [], "delete": []} for kind in stores}
    try:

        async def measure() -> None:
            for store in stores.values():
                await create_then_delete(store, 200, 10_000_000)  # warm-up: connections, code paths
            for n in range(rounds):
                for kind, store in stores.items() if n % 2 == 0 else reversed(stores.items()):
                    created, deleted = await create_then_delete(store, count, n * count)
                    rates[kind]["create"].append(created)
                    rates[kind]["delete"].append(deleted)
                    say(f"{kind}: {created:.0f} creates/s, {deleted:.0f} deletes/s")

        asyncio.run(measure())
        assert leadership.fence.refused == 0
        costs = {"unfenced": [], "fenced": []}
        for _ in range(3):
            costs["unfenced"].append(build_cost(None, 20_000))
            costs["fenced"].append(build_cost(leadership.fence, 20_000))
    finally:
        for store in stores.values():
            store.close()
        leadership.stop()
    rows = [
        Row(
            "ha",
            "building and serializing one create's transaction in this process: unfenced / fenced",
            f"{median(costs['unfenced']):.1f} / {median(costs['fenced']):.1f} µs",
            anchor="20,000 each, 3 rounds, no ZooKeeper: the fence's own cost",
        )
    ]
    for op in ("create", "delete"):
        plain, fenced = rates["unfenced"][op], rates["fenced"][op]
        ratios = [f / p for f, p in zip(fenced, plain, strict=True)]
        rows += [
            Row("ha", f"unfenced {op}s through the ZooKeeper store, per second ({IN_FLIGHT} in flight)", spread(plain)),
            Row("ha", f"fenced {op}s (two checks per transaction), per second", spread(fenced)),
            Row(
                "ha",
                f"fenced vs unfenced {op} rate",
                spread(ratios, "{:.2f}"),
                ">= 0.9",
                "ratio per alternating round, median; same ZooKeeper, same run",
                median(ratios) >= 0.9,
            ),
        ]
    return rows


def failover_rows(hosts: str, quick: bool) -> list[Row]:
    from tests.test_leadership import Contender, first_to_lead

    rounds = 1 if quick else 3
    crash: list[float] = []
    clean: list[float] = []
    for kind, times, stop in (
        ("kill -9", crash, lambda c: c.proc.kill()),
        ("SIGTERM", clean, lambda c: c.proc.send_signal(signal.SIGTERM)),
    ):
        for _ in range(rounds if kind == "kill -9" else rounds + 2):
            prefix = f"bench-ha-{uuid.uuid4().hex[:8]}"
            first = Contender(hosts, prefix, "first", SESSION_TIMEOUT)
            second = None
            try:
                first.leads(30)
                second = Contender(hosts, prefix, "second", SESSION_TIMEOUT)
                url = first.url
                second.wait_for(lambda e, url=url: e["event"] == "role" and e["leader"] == url, 30)
                first.wait_for(lambda e: e["event"] == "ack", 10)
                asked = time.time()
                stop(first)
                took = first_to_lead([second], asked, SESSION_TIMEOUT + 10)
                times.append(took["at"] - asked)
                say(f"{kind}: the other led after {times[-1]:.2f} s")
            finally:
                first.stop()
                if second is not None:
                    second.stop()
    return [
        Row(
            "ha",
            f"kill -9 of the leader -> another leads (session timeout {SESSION_TIMEOUT:g} s; election only)",
            spread(crash, "{:.2f} s"),
            f"<= {SESSION_TIMEOUT + 2:g} s",
            "Spark standalone master HA 1-2 min; Kubernetes leases 15 s; Lighter up to 10 min",
            median(crash) <= SESSION_TIMEOUT + 2,
        ),
        Row(
            "ha",
            "SIGTERM of the leader -> another leads (clean handover; election only)",
            spread(clean, "{:.3f} s"),
            "<= 1 s",
            "",
            max(clean) <= 1.0,
        ),
    ]


def group_server(work_dir: Path, hosts: str, prefix: str, **extra: str):
    from tests.conftest import FAKE_SPARK_HOME, start_server

    port = free_port()
    settings = {
        "livy.server.recovery.mode": "ha",
        "livy.server.recovery.state-store": "zookeeper",
        "livy.server.recovery.state-store.url": hosts,
        "livy.server.recovery.zk-state-store.key-prefix": prefix,
        "livy.server.ha.advertised-url": f"http://127.0.0.1:{port}",
        "livy.server.ha.session-timeout": f"{SESSION_TIMEOUT:g}s",
        "livy.server.session.state-retain.sec": "1h",
        "livy.server.session.max-sessions": "100000",
        "livy.server.spark-home": str(FAKE_SPARK_HOME),
        **extra,
    }
    return start_server(work_dir, settings, port=port, timeout=120)


def serves_all(url: str, count: int) -> bool:
    """Leads (not a standby proxying to a leader still draining) and answers with every record."""
    try:
        if requests.get(url + "/ready", timeout=5).status_code != 200:
            return False
        answer = requests.get(url + "/batches", params={"size": 1}, timeout=5)
    except requests.RequestException:
        return False
    return answer.status_code == 200 and answer.json().get("total") == count


def standby_of(url: str, leader: str) -> bool:
    try:
        return requests.get(url + "/ready", timeout=5).json()["leader"] == leader
    except requests.RequestException:
        return False


def latencies(client: requests.Session, url: str, ids: list[int]) -> list[float]:
    times = []
    for batch_id in ids:
        start = time.perf_counter()
        answer = client.get(f"{url}/batches/{batch_id}/state", timeout=10)
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def filled_group(hosts: str, count: int) -> str:
    """A new key prefix holding `count` finished batch records, as a group's store."""
    from kazoo.client import KazooClient

    from bench.bench_recovery import fill_zookeeper, record

    prefix = f"bench-group-{uuid.uuid4().hex[:8]}"
    now = time.time()
    client = KazooClient(hosts=hosts)
    client.start(timeout=30)
    try:
        fill_zookeeper(client, prefix, [record(i, "success", now - 120, now - 60) for i in range(count)])
    finally:
        client.stop()
        client.close()
    say(f"{count} records in ZooKeeper under /{prefix}")
    return prefix


def server_rows(work_dir: Path, hosts: str, quick: bool) -> list[Row]:
    count = 5000 if quick else 40_000
    prefix = filled_group(hosts, count)
    servers = [group_server(work_dir, hosts, prefix)]
    direct: list[float] = []
    proxied: list[float] = []
    crash: list[float] = []
    clean: list[float] = []
    try:
        wait_until(lambda: serves_all(servers[0].url, count), 120)
        servers.append(group_server(work_dir, hosts, prefix))
        leader, standby = servers
        ids = [n * (count // 500) for n in range(500)]
        with requests.Session() as http:
            latencies(http, leader.url, ids[:50])
            latencies(http, standby.url, ids[:50])  # warm-up: connections
            for n in range(4 if quick else 10):
                for url, into in ((leader.url, direct), (standby.url, proxied))[:: 1 if n % 2 == 0 else -1]:
                    into += latencies(http, url, ids)
        for kind in ["kill -9", "SIGTERM"] * (1 if quick else 2):
            if kind == "kill -9":
                leader.proc.kill()
            else:
                leader.proc.send_signal(signal.SIGTERM)
            asked = time.monotonic()
            wait_until(lambda url=standby.url: serves_all(url, count), SESSION_TIMEOUT + 60, 0.01)
            (crash if kind == "kill -9" else clean).append(time.monotonic() - asked)
            say(f"{kind}: the other served all {count} records after {(crash if kind == 'kill -9' else clean)[-1]:.2f} s")
            leader.proc.wait(30)
            servers.append(group_server(work_dir, hosts, prefix))
            leader, standby = standby, servers[-1]
            wait_until(lambda url=standby.url, leading=leader.url: standby_of(url, leading), 30)
    finally:
        for server in servers:
            server.stop()
    ms = 1000
    return [
        Row(
            "ha",
            "GET /batches/{id}/state straight to the leader: p50 / p99",
            f"{percentile(direct, 0.5) * ms:.1f} / {percentile(direct, 0.99) * ms:.1f} ms (n={len(direct)})",
            anchor=f"{count:,} records held",
        ),
        Row(
            "ha",
            "the same through a standby's proxy: p50 / p99",
            f"{percentile(proxied, 0.5) * ms:.1f} / {percentile(proxied, 0.99) * ms:.1f} ms (n={len(proxied)})",
        ),
        Row(
            "ha",
            "added by the standby's proxy: p50 / p99",
            f"{(percentile(proxied, 0.5) - percentile(direct, 0.5)) * ms:.1f} / "
            f"{(percentile(proxied, 0.99) - percentile(direct, 0.99)) * ms:.1f} ms",
            anchor="alternating blocks, one client",
        ),
        Row(
            "ha",
            f"kill -9 of the leader -> the other serves all {count:,} records",
            spread(crash, "{:.2f} s"),
            f"<= {SESSION_TIMEOUT + 2:g} s",
            "Spark standalone master HA 1-2 min; Kubernetes leases 15 s; Lighter up to 10 min",
            max(crash) <= SESSION_TIMEOUT + 2,
        ),
        Row(
            "ha",
            f"SIGTERM of the leader -> the other serves all {count:,} records",
            spread(clean, "{:.2f} s"),
            "<= 1 s",
            "",
            max(clean) <= 1.0,
        ),
    ]


STANDBY_ROUTES = ("straight to the leader", "through a proxying standby", "through a redirecting standby")


def standby_rows(work_dir: Path, hosts: str, quick: bool) -> list[Row]:
    """(d) The standby's two answers side by side: a leader, a proxying standby and a redirecting one (each
    client following the 307 as requests does) over 2,000 finished records; one keep-alive client per route."""
    count, block, blocks = 2000, 250, (4 if quick else 9)
    prefix = filled_group(hosts, count)
    servers = [group_server(work_dir, hosts, prefix)]
    times: dict[str, list[float]] = {route: [] for route in STANDBY_ROUTES}
    try:
        wait_until(lambda: serves_all(servers[0].url, count), 120)
        servers += [
            group_server(work_dir, hosts, prefix),
            group_server(work_dir, hosts, prefix, **{"livy.server.ha.standby": "redirect"}),
        ]
        leader = servers[0]
        for standby in servers[1:]:
            wait_until(lambda url=standby.url: standby_of(url, leader.url), 30)
        urls = dict(zip(STANDBY_ROUTES, (server.url for server in servers), strict=True))
        clients = {route: requests.Session() for route in STANDBY_ROUTES}
        ids = [n * (count // block) for n in range(block)]
        followed = clients[STANDBY_ROUTES[2]].get(f"{urls[STANDBY_ROUTES[2]]}/batches/0/state", timeout=10)
        assert [r.status_code for r in followed.history] == [307] and followed.url.startswith(leader.url), followed.url
        for route in STANDBY_ROUTES:
            latencies(clients[route], urls[route], ids[:50])  # warm-up: connections
        for n in range(blocks):  # each route in each place of a round equally often
            for route in STANDBY_ROUTES[n % 3 :] + STANDBY_ROUTES[: n % 3]:
                times[route] += latencies(clients[route], urls[route], ids)
        for client in clients.values():
            client.close()
    finally:
        for server in servers:
            server.stop()
    ms = 1000
    direct = times[STANDBY_ROUTES[0]]
    rows = [
        Row(
            "ha",
            f"GET /batches/{{id}}/state {route}: p50 / p99",
            f"{percentile(taken, 0.5) * ms:.1f} / {percentile(taken, 0.99) * ms:.1f} ms (n={len(taken):,})",
            anchor=f"{count:,} records; one keep-alive client per route, rotating blocks of {block}"
            if route == STANDBY_ROUTES[0]
            else ("requests following the 307 (livy.server.ha.standby = redirect)" if route == STANDBY_ROUTES[2] else ""),
        )
        for route, taken in times.items()
    ]
    for route in STANDBY_ROUTES[1:]:
        taken = times[route]
        rows.append(
            Row(
                "ha",
                f"added {route}: p50 / p99",
                f"{(percentile(taken, 0.5) - percentile(direct, 0.5)) * ms:.1f} / "
                f"{(percentile(taken, 0.99) - percentile(direct, 0.99)) * ms:.1f} ms",
            )
        )
    return rows


def run(work_dir: Path, quick: bool) -> list[Row]:
    from tests.zookeeper import ZooKeeperServer

    work_dir.mkdir(parents=True, exist_ok=True)
    zookeeper = ZooKeeperServer(work_dir / "zookeeper").start()
    try:
        rows = fence_rows(zookeeper.hosts, quick) + failover_rows(zookeeper.hosts, quick)
        return rows + server_rows(work_dir, zookeeper.hosts, quick) + standby_rows(work_dir, zookeeper.hosts, quick)
    finally:
        zookeeper.stop()


def run_standby(work_dir: Path, quick: bool) -> list[Row]:
    from tests.zookeeper import ZooKeeperServer

    zookeeper = ZooKeeperServer(work_dir / "zookeeper").start()
    try:
        return standby_rows(work_dir, zookeeper.hosts, quick)
    finally:
        zookeeper.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="livy-bench-ha-") as tmp:
        part = run_standby if "--standby" in sys.argv else run
        for row in part(Path(tmp), "--quick" in sys.argv):
            print(f"{row.figure}: {row.value}" + (f" (target {row.target}, met: {row.met})" if row.target else ""))
