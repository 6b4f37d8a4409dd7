"""The sweeps as functions, against the real server over loopback and a real ZooKeeper.

Exact age boundaries are checked here, where a sweep runs within milliseconds of its set-up;
tests/airflow/test_maintenance_dag.py runs the same code through the DAG.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_livy import zookeeper_multi
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.maintenance import tasks, terminal_since
from airflow_provider_livy.maintenance.report import SweepReport
from airflow_provider_livy.maintenance.rest_sweep import sweep_rest
from airflow_provider_livy.maintenance.zookeeper_sweep import (
    DELETE_CORRUPT,
    DELETE_EXPIRED,
    DELETE_ORPHAN,
    DELETE_UNTOUCHED,
    KEEP_ACTIVE,
    KEEP_FRESH,
    KEEP_HELD,
    KEEP_NOT_RECORD,
    KEEP_UNREACHABLE,
    Rules,
    delete_nodes,
    sweep_zookeeper,
    walk,
)
from tests.conftest import LivyServer, free_port
from tests.state_store import ZooKeeperView, livy_record

MIN_AGE = 1.5


@pytest.fixture
def hook_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[LivyServer | int], LivyHook]]:
    """A LivyHook on a server, or on a port where nothing listens (an unreachable server)."""
    hooks: list[LivyHook] = []

    def make(target: LivyServer | int) -> LivyHook:
        port = target if isinstance(target, int) else target.port
        conn_id = f"livy_{port}"
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "livy_batch", "host": "127.0.0.1", "port": port})
        )
        hook = LivyHook(conn_id, retries=0)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture
def zk(zookeeper, zk_prefix: str) -> Iterator[ZooKeeperView]:
    view = ZooKeeperView(zookeeper.hosts, zk_prefix)
    yield view
    view.close()


def children(view: ZooKeeperView, directory: str) -> set[str]:
    return set(view._children(f"v1/{directory}"))


def our_record(batch_id: int, state: str, finished_at: float | None) -> bytes:
    """A record as our server writes it: Livy's fields, then state and timestamps."""
    record = json.loads(livy_record(batch_id)) | {"state": state, "createdAt": time.time() - 3600, "finishedAt": finished_at}
    return json.dumps(record).encode()


def test_rest_sweep_deletes_only_finished_batches_older_than_min_age(make_server, hook_for, job_file: str) -> None:
    server = make_server({"livy.server.session.state-retain.sec": "1h"})
    old_ok = server.submit(file=job_file, args=["exit=0"])["id"]
    old_dead = server.submit(file=job_file, args=["exit=1"])["id"]
    running = server.submit(file=job_file, args=["sleep=60"])["id"]
    for batch_id in (old_ok, old_dead):
        server.wait_for(batch_id)
    server.wait_for(running, {"running"})
    time.sleep(MIN_AGE)
    fresh = server.submit(file=job_file, args=["exit=0"])["id"]
    server.wait_for(fresh)
    kinds = tasks.hook_kinds(hook_for(server))

    dry = sweep_rest(kinds, MIN_AGE, dry_run=True)
    assert sorted(dry.report.deleted) == [f"batch/{old_ok}", f"batch/{old_dead}"]
    assert server.batch_ids() == [old_ok, old_dead, running, fresh], "a dry run deletes nothing"
    assert dry.held == 2

    real = sweep_rest(kinds, MIN_AGE)
    assert sorted(real.report.deleted) == [f"batch/{old_ok}", f"batch/{old_dead}"]
    assert dict(real.report.kept) == {"not finished": 1, "finished less than min_age ago": 1}
    assert real.report.scanned == 4 and real.held == 2 and real.report.errors == []
    assert real.report.notes == [] and real.report.extra["sessions_by_kind"] == {}, "our server has sessions: none here"
    assert server.batch_ids() == [running, fresh]
    assert real.record == {}, "our server reports finishedAt: nothing to remember between runs"


def test_rest_sweep_on_an_unreachable_server_reports_and_deletes_nothing(hook_for) -> None:
    outcome = sweep_rest(tasks.hook_kinds(hook_for(free_port())), MIN_AGE, previous={"batch:3": [1.0, "|"]})
    assert outcome.held is None and outcome.report.scanned == 0
    assert len(outcome.report.errors) == 1 and "listing batches failed" in outcome.report.errors[0]
    assert outcome.record == {"batch:3": [1.0, "|"]}, "what was remembered survives an outage"


def test_terminal_since_remembers_first_sight_and_resets_on_a_reused_id() -> None:
    previous: terminal_since.Record = {"batch:1": [100.0, "a|app_1"], "batch:2": [100.0, "b|"], "batch:9": [50.0, "|"]}
    current: terminal_since.Record = {}
    assert terminal_since.first_seen(previous, current, "batch:1", "a|app_1", 500.0) == 100.0
    assert terminal_since.first_seen(previous, current, "batch:2", "other|", 500.0) == 500.0, "a reused id starts afresh"
    assert terminal_since.first_seen(previous, current, "batch:3", "c|", 500.0) == 500.0
    assert current == {"batch:1": [100.0, "a|app_1"], "batch:2": [500.0, "other|"], "batch:3": [500.0, "c|"]}, (
        "9 vanished: pruned"
    )
    assert terminal_since.parse(terminal_since.dump(current)) == current
    assert terminal_since.parse("not json") == {} and terminal_since.parse('{"batch:1": "x"}') == {}


def test_zookeeper_sweep_with_the_server_up(make_server, hook_for, zk: ZooKeeperView, job_file: str) -> None:
    server = make_server({**zk.settings, "livy.server.session.state-retain.sec": "1h"})
    done = server.submit(file=job_file, args=["exit=0"])["id"]
    running = server.submit(file=job_file, args=["sleep=60"])["id"]
    server.wait_for(done)
    server.wait_for(running, {"running"})
    zk.write("v1/batch/900", livy_record(900))  # orphaned: the server does not hold 900
    zk.write("v1/batch/901", b"\x00not json")
    zk.write("v1/interactive/state", b'{"nextSessionId": 8}')
    zk.write("v1/interactive/7", livy_record(7))  # our server has no interactive sessions: orphaned too
    time.sleep(MIN_AGE)
    zk.write("v1/batch/902", livy_record(902))  # orphaned but just written
    index_before = zk.index()
    assert index_before, "our server keeps its index beside the records"
    rules = Rules(min_age=MIN_AGE, untouched=3600)
    hook = hook_for(server)

    dry = sweep_zookeeper(zk.client, zk.prefix, lambda: tasks.server_ids(hook), rules, dry_run=True)
    assert sorted(dry.deleted) == ["batch/900", "batch/901", "interactive/7"]
    assert children(zk, "batch") == {"state", str(done), str(running), "900", "901", "902"}

    real = sweep_zookeeper(zk.client, zk.prefix, lambda: tasks.server_ids(hook), rules)
    assert sorted(real.deleted) == ["batch/900", "batch/901", "interactive/7"]
    assert real.extra["deleted_by_reason"] == {DELETE_ORPHAN: 2, DELETE_CORRUPT: 1}
    assert dict(real.kept) == {KEEP_HELD: 2, KEEP_FRESH: 1, KEEP_NOT_RECORD: 2}
    assert real.scanned == 6 and real.errors == []
    assert children(zk, "batch") == {"state", str(done), str(running), "902"}
    assert children(zk, "interactive") == {"state"}
    assert zk.index() == index_before, "the server's index is not ours to touch"
    assert server.batch_ids() == [done, running]


def test_zookeeper_sweep_with_the_server_unreachable(hook_for, zk: ZooKeeperView) -> None:
    now = time.time()
    zk.write("v1/batch/state", b'{"nextSessionId": 20}')
    zk.write("v1/batch/10", our_record(10, "success", now - 600))  # says: finished ten minutes ago
    zk.write("v1/batch/11", our_record(11, "running", None))  # untouched for long, but says running
    zk.write("v1/batch/12", livy_record(12))  # Livy's record: only its age can tell
    zk.write("v1/batch/13", b"{truncated")
    time.sleep(MIN_AGE)
    zk.write("v1/batch/14", our_record(14, "dead", time.time()))  # finished just now
    zk.write("v1/batch/15", livy_record(15))  # written just now
    hook = hook_for(free_port())
    rules = Rules(min_age=60, untouched=MIN_AGE)

    report = sweep_zookeeper(zk.client, zk.prefix, lambda: tasks.server_ids(hook), rules)
    assert sorted(report.deleted) == ["batch/10", "batch/12", "batch/13"]
    assert report.extra["deleted_by_reason"] == {DELETE_EXPIRED: 1, DELETE_UNTOUCHED: 1, DELETE_CORRUPT: 1}
    assert dict(report.kept) == {KEEP_ACTIVE: 1, KEEP_UNREACHABLE: 2, KEEP_NOT_RECORD: 1}
    assert report.extra["server_reachable"] == {"batch": False, "session": False}
    assert children(zk, "batch") == {"state", "11", "14", "15"}


def test_multi_read_and_its_fallback_read_the_same(zk: ZooKeeperView) -> None:
    for batch_id in range(5):
        zk.write(f"v1/batch/{batch_id}", livy_record(batch_id))
    paths = [f"/{zk.prefix}/v1/batch/{n}" for n in (0, 1, 99, 2, 3, 4)]
    multi = zookeeper_multi.read_many(zk.client, paths, multi=True)
    single = zookeeper_multi.read_many(zk.client, paths, multi=False)
    assert multi == single
    assert multi[2] is None, "a missing znode reads as None"
    assert json.loads(multi[5][0])["id"] == 4 and multi[5][1].version == 0
    report = SweepReport("zookeeper")
    assert walk(zk.client, f"/{zk.prefix}", report, multi_read=False) == walk(zk.client, f"/{zk.prefix}", report)


def test_a_record_rewritten_after_it_was_read_is_not_deleted(zk: ZooKeeperView) -> None:
    for batch_id in range(3):
        zk.write(f"v1/batch/{batch_id}", livy_record(batch_id))
    nodes = walk(zk.client, f"/{zk.prefix}", SweepReport("zookeeper"))
    zk.write("v1/batch/1", livy_record(1, "application_1_0001"))  # a server took id 1 up again
    deletion = delete_nodes(zk.client, nodes)
    assert sorted(n.session_id for n in deletion.deleted) == [0, 2]
    assert [n.session_id for n in deletion.changed] == [1] and deletion.errors == []
    assert children(zk, "batch") == {"1"}


def test_bad_params_get_a_readable_error() -> None:
    with pytest.raises(ValueError, match="min_age_seconds must be a number"):
        tasks.settings_from({"min_age_seconds": "soon"})
    with pytest.raises(ValueError, match="dry_run must be true or false"):
        tasks.settings_from({"dry_run": "maybe"})
    settings = tasks.settings_from({"min_age_seconds": "30", "dry_run": "true", "zookeeper_hosts": " "})
    assert settings.min_age == 30 and settings.dry_run and settings.zookeeper_hosts is None


def test_idle_sessions_are_timed_ended_past_max_idle_and_alerted_after_a_day(make_server, hook_for) -> None:
    """The fake spark-submit runs the real REPL as plain Python, so sessions go idle and busy for real."""
    from airflow_provider_livy.maintenance.report import verdict
    from airflow_provider_livy.maintenance.rest_sweep import IDLE_ALERT, KEPT_ACTIVE

    server = make_server()
    hook = hook_for(server)
    idle, busy = (hook.create_session({"kind": kind})["id"] for kind in ("pyspark", "sql"))
    for session_id in (idle, busy):
        assert hook.wait_for_session(session_id, 1, 60) == "idle"
    hook.submit_statement(busy, "import time; time.sleep(600)", kind="pyspark")
    deadline = time.monotonic() + 30
    while hook.get_session_state(busy) != "busy":
        assert time.monotonic() < deadline, "the statement never ran"
        time.sleep(0.1)
    view = hook.get_session(idle)
    now = view["lastActivityAt"] + 10

    untouched = sweep_rest(tasks.hook_kinds(hook), MIN_AGE, now=now)  # max_idle off: idleness is only counted
    assert untouched.report.deleted == [] and untouched.report.kept == {KEPT_ACTIVE: 2}
    assert untouched.report.extra["sessions_by_kind"] == {"pyspark": 1, "sql": 1}
    assert untouched.record == {}, "our server's lastActivityAt needs no record"

    day_later = sweep_rest(tasks.hook_kinds(hook), MIN_AGE, dry_run=True, now=view["lastActivityAt"] + IDLE_ALERT + 1)
    assert day_later.report.extra["idle_over_day"] == 1, "the busy one is not idle, however old"
    problems = verdict([day_later.report.as_dict()], 2, 100, day_later.report.extra["idle_over_day"])
    assert problems == [
        "1 interactive session(s) have been idle for over a day: a client forgot to delete them and each holds a "
        "Spark driver; set max_idle_seconds to end them, or lower the server's session timeout"
    ]

    below = sweep_rest(tasks.hook_kinds(hook), MIN_AGE, now=now, max_idle=10.5)
    assert below.report.deleted == [] and below.report.extra["idle_ended"] == 0
    ended = sweep_rest(tasks.hook_kinds(hook), MIN_AGE, now=now, max_idle=9.5)
    assert ended.report.deleted == [f"session/{idle}"] and ended.report.extra["idle_ended"] == 1
    assert ended.report.kept == {KEPT_ACTIVE: 1} and ended.held == 1
    assert [s["id"] for s in hook.list_sessions()] == [busy] and hook.get_session_state(busy) == "busy"
