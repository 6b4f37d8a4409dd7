"""Benchmark: several servers on one ZooKeeper: what the fence costs, and how fast leadership moves.

(a) Fenced against unfenced writes through the ZooKeeper store on one ZooKeeper: the create rate
(record, index entry and id counter in one transaction, as a POST writes them, 64 in flight as from 64
clients) and the delete rate (one removal per DELETE, 64 in flight). Four stores take turns in each
round, each in each place equally often: unfenced; an unfenced twin (the same work again: the noise);
two checks of the same shape on nodes no leader moves (the checks' own cost); fenced, with the
checks of a real `Leadership` that leads its key prefix (server.fence). The ratio to unfenced is taken
per round, and the median reported. ZooKeeper runs on one core and this process on the other meanwhile,
since the scheduler moving both sides' threads between 2 cores moved a round's rate by 1.7x. Also:
ZooKeeper requests per write (round trips), CPU per write of this process and of ZooKeeper.
Target: fenced >= 0.9x unfenced.

(b) Leadership moving between contender processes (tests/ha_contender.py, each creating records
through a fenced store while it leads), session timeout 10 s (the default): kill -9 of the leader
to another taking the lead, and SIGTERM of the leader (a clean stop) to another taking the lead.
Targets: session timeout + 2 s, and 1 s. These are the election's times alone.

(c) Two real livy-server processes in recovery mode ha, sharing livy.server.state-dir, on a store
holding 40,000 finished records (5,000 with --quick): GET /batches/{id}/state straight to the leader
against the same through the standby's proxy, alternating blocks, one keep-alive client (p50, p99);
then kill -9 of the leader, and SIGTERM of the leader, each while 50 batches have running drivers
(the fake spark-submit, 30 s each) and one interactive session is live (its REPL as plain Python,
holding x = 42): the time to the other answering GET /batches with every record, to every live batch
running in its view, to the session answering `x` with 42; then each live batch must end `success`
with its driver launched once (the fake spark-submit counts launches), and the time from a driver's
exit to the new leader's finishedAt. A new standby is started after each. Targets: session timeout + 2 s,
and 1 s.

(d) The standby's two answers side by side: three real livy-server processes on 2,000 finished records, the
leader, a standby that proxies (the default) and one with `livy.server.ha.standby = redirect`:
GET /batches/{id}/state straight to the leader, through the proxy, and through the redirect with the
client (requests) following the 307, one keep-alive client per route, in rotating blocks (p50, p99).

Run alone: .venv/bin/python -m bench.bench_ha [--quick] [fence] [election] [servers] [standby] (the parts; all
by default; --standby is part (d) alone)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
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


KINDS = ("unfenced", "unfenced twin", "two checks, no leader", "fenced")


def pinned(zookeeper_pid: int) -> contextlib.AbstractContextManager[bool]:
    """ZooKeeper on one core, this process (every thread) on the other, while the fence is measured.

    Left to the scheduler, the two sides' threads moved between the 2 cores from round to round, and a
    round's rate followed where they landed (3,300-5,800 creates/s for the same store in one run), which
    decided the ratio. Pinned, each side has a core, as when ZooKeeper runs on other hosts."""

    @contextlib.contextmanager
    def pin() -> Iterator[bool]:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            yield False
            return
        ours = [int(tid) for tid in os.listdir("/proc/self/task")]
        theirs = psutil.Process(zookeeper_pid).threads()
        try:
            for thread in theirs:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, {cores[1]})
            for tid in ours:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, {cores[0]})
            yield True
        finally:
            for tid in [thread.id for thread in theirs] + [int(tid) for tid in os.listdir("/proc/self/task")]:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(tid, set(cores))

    return pin()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def counted(store) -> list[int]:
    """Requests the store's client sends (a transaction is one request, one round trip): counts[0]."""
    counts = [0]
    send = store.client._call

    def call(request, result):
        counts[0] += 1
        return send(request, result)

    store.client._call = call
    return counts


def round_order(n: int) -> tuple[str, ...]:
    """Each kind takes each place equally often: rotated every two rounds, every other round reversed."""
    turned = KINDS[(n // 2) % len(KINDS) :] + KINDS[: (n // 2) % len(KINDS)]
    return turned[::-1] if n % 2 else turned


def static_fence(hosts: str, prefix: str):
    """Two checks shaped like a leader's (same paths' length, nodes that never change), armed for good."""
    from kazoo.client import KazooClient

    from airflow_provider_livy.server.fence import Fence

    checks = [(f"/{prefix}/ha/epoch", 0), (f"/{prefix}/ha/candidates/c-0000000000", 0)]
    client = KazooClient(hosts=hosts)
    client.start(timeout=30)
    try:
        for path, _ in checks:
            client.ensure_path(path)
    finally:
        client.stop()
        client.close()
    fence = Fence()
    fence.arm(checks)
    return fence


def fence_rows(hosts: str, quick: bool, zookeeper_pid: int) -> list[Row]:
    from airflow_provider_livy.server.leadership import Leadership
    from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

    count, rounds = (1000, 8) if quick else (1000, 32)
    tag = uuid.uuid4().hex[:8]
    leadership = Leadership(hosts, f"bench-fenced-{tag}", "http://bench", SESSION_TIMEOUT).start()
    deadline = time.monotonic() + 30
    while not leadership.leading:
        assert time.monotonic() < deadline, "the benchmark's leadership never led"
        time.sleep(0.05)
    stores = {
        "unfenced": ZooKeeperStore(hosts, f"bench-plain-{tag}"),
        "unfenced twin": ZooKeeperStore(hosts, f"bench-twin-{tag}"),
        "two checks, no leader": ZooKeeperStore(hosts, f"bench-static-{tag}", fence=static_fence(hosts, f"bench-static-{tag}")),
        "fenced": ZooKeeperStore(hosts, f"bench-fenced-{tag}", fence=leadership.fence),
    }
    requests_sent = {kind: counted(store) for kind, store in stores.items()}
    rates: dict[str, dict[str, list[float]]] = {kind: {"create": [], "delete": []} for kind in stores}
    cpu: dict[str, dict[str, list[float]]] = {kind: {"ours": [], "zookeeper": []} for kind in stores}
    trips: dict[str, list[float]] = {kind: [] for kind in stores}
    try:

        async def measure() -> None:
            for _ in range(2):  # warm-up: connections, code paths, ZooKeeper's JIT (its CPU per write settles)
                for store in stores.values():
                    await create_then_delete(store, count, 10_000_000)
            for n in range(rounds):
                for kind in round_order(n):
                    store = stores[kind]
                    gc.collect()  # no collection owed by the kind before
                    sent, ours, theirs = requests_sent[kind][0], time.process_time(), cpu_seconds(zookeeper_pid)
                    created, deleted = await create_then_delete(store, count, n * count)
                    writes = 2 * count
                    cpu[kind]["ours"].append((time.process_time() - ours) / writes * 1e6)
                    cpu[kind]["zookeeper"].append((cpu_seconds(zookeeper_pid) - theirs) / writes * 1e6)
                    trips[kind].append((requests_sent[kind][0] - sent) / writes)
                    rates[kind]["create"].append(created)
                    rates[kind]["delete"].append(deleted)
                    say(f"round {n} {kind}: {created:.0f} creates/s, {deleted:.0f} deletes/s")

        with pinned(zookeeper_pid) as was_pinned:
            asyncio.run(measure())
        assert leadership.fence.refused == 0
        costs = {"unfenced": [], "fenced": []}
        for n in range(9):  # alternating, so a busy moment costs both
            for kind in ("unfenced", "fenced")[:: 1 if n % 2 == 0 else -1]:
                costs[kind].append(build_cost(leadership.fence if kind == "fenced" else None, 10_000))
    finally:
        for store in stores.values():
            store.close()
        leadership.stop()
    how = "ZooKeeper on one core, this process on the other" if was_pinned else "not pinned (fewer than 2 cores)"
    rows = [
        Row(
            "ha",
            "building and serializing one create's transaction in this process: unfenced / fenced; added by the fence",
            f"{median(costs['unfenced']):.1f} / {median(costs['fenced']):.1f} µs; "
            f"{median([f - u for f, u in zip(costs['fenced'], costs['unfenced'], strict=True)]):.1f} µs",
            anchor="10,000 each, 9 alternating rounds, no ZooKeeper: the fence's own cost (added: median per round)",
        ),
        Row(
            "ha",
            "ZooKeeper requests per write (a create's transaction, a DELETE's): " + ", ".join(KINDS),
            " / ".join(f"{median(trips[kind]):.2f}" for kind in KINDS),
            anchor="one round trip each: the checks ride in the same transaction",
        ),
    ]
    for side in ("ours", "zookeeper"):
        rows.append(
            Row(
                "ha",
                f"CPU per write, {'this process' if side == 'ours' else 'ZooKeeper'}: " + ", ".join(KINDS),
                " / ".join(f"{median(cpu[kind][side]):.0f}" for kind in KINDS) + " µs",
                anchor="median over rounds; creates and deletes together",
            )
        )
    for op in ("create", "delete"):
        plain = rates["unfenced"][op]
        rows += [
            Row("ha", f"unfenced {op}s through the ZooKeeper store, per second ({IN_FLIGHT} in flight)", spread(plain)),
            Row("ha", f"fenced {op}s (two checks per transaction), per second", spread(rates["fenced"][op])),
        ]
        for kind in KINDS[1:]:
            ratios = [other / base for other, base in zip(rates[kind][op], plain, strict=True)]
            goal = kind == "fenced"
            rows.append(
                Row(
                    "ha",
                    f"{kind} vs unfenced {op} rate",
                    spread(ratios, "{:.2f}"),
                    ">= 0.9" if goal else "",
                    f"ratio per round, median; each kind in each place of a round equally often; {how}"
                    if goal
                    else ("the same store twice: the noise" if kind == "unfenced twin" else "the checks' cost alone"),
                    median(ratios) >= 0.9 if goal else None,
                )
            )
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
        "livy.server.state-dir": str(work_dir / "state"),  # shared, as local drivers need (driver logs, exit codes)
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
    os.environ["FAKE_SPARK_ARGS_FILE"] = str(work_dir / "launches.txt")  # the fake spark-submit counts launches
    servers = [group_server(work_dir, hosts, prefix)]
    direct: list[float] = []
    proxied: list[float] = []
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
        failovers = live_failovers(work_dir, count, servers, quick)
    finally:
        for server in servers:
            server.stop()
        os.environ.pop("FAKE_SPARK_ARGS_FILE", None)
    ms = 1000
    rows = [
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
    ]
    return rows + failover_rows_of(failovers, count)


LIVE_BATCHES = 50  # batches whose drivers run across each failover
DRIVER_SECONDS = 30  # each live driver's run: the time to start them all, a kill -9's failover, and some


@dataclass
class Failover:
    """One stop of the leader with live drivers, seen from the other server (seconds from the signal)."""

    kind: str
    serves: float  # it leads and answers GET /batches with every record
    follows: float  # and every live batch is running in its view: its driver re-attached, not re-launched
    session: float  # and the live session answers a statement with the state set before the stop
    ended: dict[int, str]  # each live batch's end, as the new leader saw it
    noticed: list[float]  # per live batch: the driver's exit (its exit file) to the new leader's finishedAt
    launches: list[int]  # per live batch: how often spark-submit ran it


def all_running(server, ids: list[int]) -> bool:
    try:
        return all(server.get(f"/batches/{batch_id}/state").json().get("state") == "running" for batch_id in ids)
    except (requests.RequestException, ValueError):
        return False


def start_live(leader, job: Path, mark: str) -> tuple[list[int], int]:
    """LIVE_BATCHES running drivers and one idle interactive session (its REPL as plain Python) holding x."""
    ids = [
        leader.submit(file=str(job), args=[f"mark={mark}-b{n}-", f"sleep={DRIVER_SECONDS}"])["id"] for n in range(LIVE_BATCHES)
    ]
    wait_until(lambda: all_running(leader, ids), 120, 0.2)
    session = leader.open_session(name=f"live-{mark}")["id"]
    assert leader.run(session, "x = 6 * 7")["state"] == "available"
    return ids, session


def answers_x(server, session: int) -> bool:
    """The session is back on this server, with the interpreter state it had."""
    try:
        if server.get(f"/sessions/{session}/state").json().get("state") != "idle":
            return False
        return server.run(session, "x", timeout=10)["output"]["data"]["text/plain"] == "42"
    except (requests.RequestException, ValueError, KeyError, AssertionError):
        return False


def fail_over(kind: str, leader, standby, job: Path, mark: str, total: int) -> Failover:
    ids, session = start_live(leader, job, mark)
    if kind == "kill -9":
        leader.proc.kill()
    else:
        leader.proc.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    wait_until(lambda: serves_all(standby.url, total), SESSION_TIMEOUT + 60, 0.01)
    serves = time.monotonic() - asked
    wait_until(lambda: all_running(standby, ids), 60, 0.01)
    follows = time.monotonic() - asked
    wait_until(lambda: answers_x(standby, session), 60, 0.01)
    back = time.monotonic() - asked
    say(
        f"{kind}: the other served all {total} records after {serves:.2f} s, followed {len(ids)} drivers after {follows:.2f} s, "
        f"answered in the live session after {back:.2f} s"
    )
    ended, noticed = {}, []
    for batch_id in ids:
        view = standby.wait_for(batch_id, timeout=DRIVER_SECONDS + 60)
        ended[batch_id] = view["state"]
        exit_file = standby.work_dir / "driver-logs" / f"{batch_id}.exit"
        if view["finishedAt"] is not None and exit_file.exists():
            noticed.append(view["finishedAt"] - exit_file.stat().st_mtime)
    assert standby.delete(f"/sessions/{session}").status_code == 200
    args = (standby.work_dir / "launches.txt").read_text().splitlines()
    launches = [args.count(f"mark={mark}-b{n}-") for n in range(len(ids))]
    return Failover(kind, serves, follows, back, ended, noticed, launches)


def live_failovers(work_dir: Path, count: int, servers: list, quick: bool) -> list[Failover]:
    """kill -9 and SIGTERM of the leader, each while LIVE_BATCHES drivers run and a session is live; a new
    standby is started after each. `servers` gets every server started (the caller stops them)."""
    job = work_dir / "job.py"
    job.write_text("print('fake job')\n")
    hosts = servers[0].settings["livy.server.recovery.state-store.url"]
    prefix = servers[0].settings["livy.server.recovery.zk-state-store.key-prefix"]
    leader, standby = servers[-2:]
    done: list[Failover] = []
    for n, kind in enumerate(["kill -9", "SIGTERM"] * (1 if quick else 2)):
        done.append(fail_over(kind, leader, standby, job, f"r{n}", count + LIVE_BATCHES * (n + 1)))
        leader.proc.wait(30)
        servers.append(group_server(work_dir, hosts, prefix))
        leader, standby = standby, servers[-1]
        wait_until(lambda url=standby.url, leading=leader.url: standby_of(url, leading), 30)
    return done


def failover_rows_of(failovers: list[Failover], count: int) -> list[Row]:
    rows = []
    for kind, target in (("kill -9", SESSION_TIMEOUT + 2), ("SIGTERM", 1.0)):
        mine = [f for f in failovers if f.kind == kind]
        anchor = "Spark standalone master HA 1-2 min; Kubernetes leases 15 s; Lighter up to 10 min" if kind == "kill -9" else ""
        for figure, values in (
            (f"the other serves every record ({count:,}+ finished, {LIVE_BATCHES} running)", [f.serves for f in mine]),
            (f"it follows all {LIVE_BATCHES} live drivers again (each running in its view)", [f.follows for f in mine]),
            ("the live session answers with its interpreter state (x set before the stop)", [f.session for f in mine]),
        ):
            rows.append(
                Row(
                    "ha",
                    f"{kind} of the leader -> {figure}",
                    spread(values, "{:.2f} s"),
                    f"<= {target:g} s",
                    anchor,
                    max(values) <= target,
                )
            )
    ended = [state for f in failovers for state in f.ended.values()]
    launches = [n for f in failovers for n in f.launches]
    noticed = [t for f in failovers for t in f.noticed]
    rows += [
        Row(
            "ha",
            "live batches across the failovers: ended success / launched exactly once (the fake spark-submit counts)",
            f"{ended.count('success')} / {launches.count(1)} of {len(ended)}",
            f"{len(ended)} / {len(ended)}",
            f"{LIVE_BATCHES} per failover, drivers of {DRIVER_SECONDS} s, servers sharing livy.server.state-dir",
            ended.count("success") == launches.count(1) == len(ended) == len(launches),
        ),
        Row(
            "ha",
            "a live driver's end (its exit file) -> the new leader's finishedAt: median / max",
            f"{median(noticed) * 1000:.0f} / {max(noticed) * 1000:.0f} ms (n={len(noticed)})" if noticed else "n/a",
            anchor="the new leader follows the drivers, it does not find them at the next restart",
        ),
    ]
    return rows


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


PARTS = ("fence", "election", "servers", "standby")


def run(work_dir: Path, quick: bool, parts: tuple[str, ...] = PARTS) -> list[Row]:
    from tests.zookeeper import ZooKeeperServer

    work_dir.mkdir(parents=True, exist_ok=True)
    zookeeper = ZooKeeperServer(work_dir / "zookeeper").start()
    try:
        rows = []
        if "fence" in parts:
            rows += fence_rows(zookeeper.hosts, quick, zookeeper.proc.pid)
        if "election" in parts:
            rows += failover_rows(zookeeper.hosts, quick)
        if "servers" in parts:
            rows += server_rows(work_dir, zookeeper.hosts, quick)
        if "standby" in parts:
            rows += standby_rows(work_dir, zookeeper.hosts, quick)
        return rows
    finally:
        zookeeper.stop()


if __name__ == "__main__":
    chosen = tuple(arg.removeprefix("--") for arg in sys.argv[1:] if arg.removeprefix("--") in PARTS) or PARTS
    with tempfile.TemporaryDirectory(prefix="livy-bench-ha-") as tmp:
        for row in run(Path(tmp), "--quick" in sys.argv, chosen):
            print(f"{row.figure}: {row.value}" + (f" (target {row.target}, met: {row.met})" if row.target else ""))
