"""The ZooKeeper sweep: recovery records that no server will use again, removed in bulk.

Livy's layout (also ours): `/<prefix>/v1/batch/<id>` and `/<prefix>/v1/interactive/<id>`, each
beside a `state` node holding the id counter. Only numeric children are session records; `state`
and anything else (our server keeps its index in the sibling `v1/batch-index`) are never read
nor deleted. A record goes when the server answers 404 for its id and the znode has not been
written for min_age, or when it cannot be parsed at all. With the server unreachable only the
unambiguous go: records that say themselves they finished long ago, and znodes untouched for
longer than a generous bound (unless the record says the session is still active).

Every delete names the znode version that was read, so a record rewritten meanwhile (a server
that took the id up again) fails the check and stays.

Servers in a group (recovery mode ha) share the prefix, and one of them leads and holds the records.
The sweep asks the leader, and fences its deletes the way the leader fences its own writes: it reads
the group's epoch node before it asks, makes sure the server that answered leads at that epoch (its
`/ready`, or its leader's when a standby answered), and each delete transaction starts with a `check`
of the epoch node's version. A takeover anywhere between the question and the delete (a new leader
recovers every record, orphans too) fails the check in ZooKeeper itself, and nothing is deleted.
Without an answer from the leader nothing of a group is deleted: a group's servers are either up,
and the leader answers, or down, and then nothing piles up. Records written with an ACL
(zookeeper_auth) need the server's identity: without it each directory or record the sweep may not
read is reported as NoAuth, in words, and nothing of it is deleted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, KazooException, NoAuthError, NoNodeError

from airflow_provider_livy import zookeeper_multi
from airflow_provider_livy.maintenance.report import SweepReport
from airflow_provider_livy.protocol import ACTIVE_STATES, TERMINAL_STATES
from airflow_provider_livy.server.fence import failures_of
from airflow_provider_livy.server.leadership import ha_root

# znode directory under /<prefix>/v1 -> the REST kind whose ids the server reports
DIRECTORIES: dict[str, str] = {"batch": "batch", "interactive": "session"}
DELETE_TIMEOUT = 30.0

DELETE_CORRUPT = "unparseable record"
DELETE_ORPHAN = "server answers 404 and not modified for min_age"
DELETE_EXPIRED = "record says terminal and expired (server unreachable)"
DELETE_UNTOUCHED = "untouched longer than untouched_seconds (server unreachable)"
KEEP_HELD = "held by the server"
KEEP_CORRUPT_HELD = "unparseable but held by the server (it rewrites the record)"
KEEP_FRESH = "modified less than min_age ago"
KEEP_ACTIVE = "record says active (server unreachable)"
KEEP_UNREACHABLE = "not provably stale (server unreachable)"
KEEP_NOT_RECORD = "not a session record (state, index or other non-numeric node)"
KEEP_CHANGED = "changed or gone during the sweep"
KEEP_UNREADABLE = "could not be read"
KEEP_NO_AUTH = "NoAuth: this identity may not read it"
NO_AUTH = (
    "NoAuth: ZooKeeper denies this sweep's identity access (the connection's zookeeper_auth extra is "
    "missing or names another identity than the server's livy.server.recovery.zk-state-store.auth)"
)
KEEP_FAILED = "delete failed"
KEEP_GROUP_UNASKED = "the group's leader could not be asked or confirmed"
KEEP_TAKEOVER = "the group's leadership changed during the sweep"


@dataclass(frozen=True, slots=True)
class Znode:
    path: str
    directory: str  # "batch" or "interactive"
    session_id: int
    data: bytes
    version: int
    mtime: float  # seconds since the epoch, from the znode's stat


@dataclass(frozen=True)
class Rules:
    min_age: float
    untouched: float  # only used while the server is unreachable


@dataclass(frozen=True)
class Epoch:
    """A group's epoch node as read before its leader was asked: its value (the leader's epoch) and version."""

    path: str
    value: int
    version: int

    @property
    def check(self) -> tuple[str, int]:
        """What each delete transaction checks: ZooKeeper refuses it once another takeover moved the version."""
        return self.path, self.version


def read_epoch(client: KazooClient, root: str) -> Epoch | None:
    """The group's epoch node under `root`, or None when the prefix is no group's (a lone server, Apache Livy)."""
    path = f"{ha_root(root)}/epoch"
    try:
        data, stat = client.retry(client.get, path)
    except NoNodeError:
        return None
    try:
        value = int(data or b"0")
    except ValueError:
        value = -1  # no leader's epoch: nothing of the group is deleted
    return Epoch(path, value, stat.version)


def parse_record(data: bytes) -> dict[str, Any] | None:
    """Livy's record: a JSON object with an integer id. Anything else is unparseable."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("id"), int) or isinstance(record.get("id"), bool):
        return None
    return record


def decide(node: Znode, held: set[int] | None, rules: Rules, now: float, group: bool = False) -> tuple[bool, str]:
    """(delete?, why) for one record; `held` is None when the server could not be asked; `group`: the prefix is a
    group's, whose leader alone can say what it holds."""
    if held is None and group:
        return False, KEEP_GROUP_UNASKED
    record = parse_record(node.data)
    if record is None:
        if held is not None and node.session_id in held:
            return False, KEEP_CORRUPT_HELD
        return True, DELETE_CORRUPT
    if held is not None:
        if node.session_id in held:
            return False, KEEP_HELD
        if now - node.mtime < rules.min_age:
            return False, KEEP_FRESH
        return True, DELETE_ORPHAN
    state, finished = record.get("state"), record.get("finishedAt")
    if state in ACTIVE_STATES:
        return False, KEEP_ACTIVE
    if state in TERMINAL_STATES and isinstance(finished, (int, float)) and now - finished >= rules.min_age:
        return True, DELETE_EXPIRED
    if now - node.mtime > rules.untouched:
        return True, DELETE_UNTOUCHED
    return False, KEEP_UNREACHABLE


def walk(client: KazooClient, root: str, report: SweepReport, multi_read: bool = True) -> list[Znode]:
    """Every numeric child of the two record directories, read in bulk; other children are only counted."""
    paths: list[tuple[str, str, int]] = []
    for directory in DIRECTORIES:
        parent = f"{root}/v1/{directory}"
        try:
            children = client.retry(client.get_children, parent)
        except NoNodeError:
            continue
        except NoAuthError:
            report.error(f"listing {parent}: {NO_AUTH}; its records were neither read nor deleted")
            continue
        for name in children:
            if name.isdigit():
                paths.append((f"{parent}/{name}", directory, int(name)))
            else:
                report.keep(KEEP_NOT_RECORD)
    reads = zookeeper_multi.read_many(client, [path for path, _, _ in paths], multi=multi_read)
    nodes: list[Znode] = []
    for (path, directory, session_id), read in zip(paths, reads, strict=True):
        report.scanned += 1
        if read is None:
            report.keep(KEEP_CHANGED)
        elif isinstance(read, NoAuthError):
            report.keep(KEEP_NO_AUTH)
            report.error(f"reading {path}: {NO_AUTH}; kept")
        elif isinstance(read, Exception):
            report.keep(KEEP_UNREADABLE)
            report.error(f"reading {path} failed: {read!r}")
        else:
            data, stat = read
            nodes.append(Znode(path, directory, session_id, data, stat.version, stat.mtime / 1000))
    return nodes


@dataclass
class Deletion:
    deleted: list[Znode]
    changed: list[Znode]  # rewritten or gone since it was read: left alone
    failed: list[Znode]
    errors: list[str]
    fenced: list[Znode] = field(default_factory=list)  # refused by the checks: the group's leadership changed


def _send(client: KazooClient, nodes: list[Znode], checks: tuple[tuple[str, int], ...]) -> Any:
    transaction = client.transaction()
    for path, version in checks:
        transaction.check(path, version)
    for node in nodes:
        transaction.delete(node.path, version=node.version)
    return transaction.commit_async()


def delete_nodes(client: KazooClient, nodes: list[Znode], checks: tuple[tuple[str, int], ...] = ()) -> Deletion:
    """Delete at the versions read, each transaction headed by `checks` (a group's epoch).

    Transactions of 1,000 are all sent before the first answer is awaited. A transaction is all or
    nothing, so one whose record check failed is replayed znode by znode (each with `checks`) to delete
    the rest; one whose `checks` failed is not: the group has a new leader, which may hold them now.
    """
    size = zookeeper_multi.TRANSACTION_OPS - len(checks)
    chunks = [nodes[i : i + size] for i in range(0, len(nodes), size)]
    done = Deletion([], [], [], [])
    replay: list[Znode] = []
    for chunk, result in [(chunk, _send(client, chunk, checks)) for chunk in chunks]:
        try:
            outcomes = result.get(timeout=DELETE_TIMEOUT)
        except (KazooException, client.handler.timeout_exception) as err:
            done.failed += chunk
            done.errors.append(f"deleting {len(chunk)} znodes ({chunk[0].path} and on) failed: {err!r}")
            continue
        if failures_of(outcomes[: len(checks)]):
            done.fenced += chunk
        elif failures_of(outcomes):
            replay += chunk
        else:
            done.deleted += chunk
    for node, result in [(node, _send(client, [node], checks)) for node in replay]:
        try:
            outcomes = result.get(timeout=DELETE_TIMEOUT)
        except (KazooException, client.handler.timeout_exception) as err:
            done.failed.append(node)
            done.errors.append(f"deleting {node.path} failed: {err!r}")
            continue
        failures = failures_of(outcomes)
        if failures_of(outcomes[: len(checks)]):
            done.fenced.append(node)
        elif not failures:
            done.deleted.append(node)
        elif isinstance(failures[0], (NoNodeError, BadVersionError)):
            done.changed.append(node)
        elif isinstance(failures[0], NoAuthError):
            done.failed.append(node)
            done.errors.append(f"deleting {node.path}: {NO_AUTH}; kept")
        else:
            done.failed.append(node)
            done.errors.append(f"deleting {node.path} failed: {failures[0]!r}")
    return done


def sweep_zookeeper(
    client: KazooClient,
    prefix: str,
    held_ids: Callable[[], Mapping[str, set[int] | None]],
    rules: Rules,
    *,
    leader_epoch: Callable[[], int | None] = lambda: None,
    dry_run: bool = False,
    multi_read: bool = True,
    clock: Callable[[], float] = time.time,
) -> SweepReport:
    """Walk, ask the server what it holds (after the walk, so every record read predates the answer), decide, delete.

    `held_ids()` maps a REST kind ("batch", "session") to the ids the server holds, or None when
    the server could not be asked. For a group, `leader_epoch()` is the epoch of the leader that answered
    it (None: unknown), asked after it; the deletes are fenced by the epoch read before.
    """
    report = SweepReport("zookeeper", dry_run=dry_run)
    root = "/" + prefix.strip("/")
    nodes = walk(client, root, report, multi_read)
    epoch = read_epoch(client, root)
    held = held_ids()
    answered = None if epoch is None else leader_epoch()
    unconfirmed = None  # or why nothing of the group may be deleted
    if epoch is not None and answered is None:
        unconfirmed = KEEP_GROUP_UNASKED
        report.error(
            f"no server of the connection says it leads the group at epoch {epoch.value} (GET /ready, on the server that"
            " answered or the leader it names); nothing of the group was deleted"
        )
    elif epoch is not None and answered != epoch.value:
        unconfirmed = KEEP_TAKEOVER
        report.notes.append(f"the server that answered led at epoch {answered}, not {epoch.value}: a takeover; nothing deleted")
    now = clock()
    doomed: list[Znode] = []
    reasons: dict[str, str] = {}
    for node in nodes:
        if unconfirmed:
            report.keep(unconfirmed)
            continue
        delete, why = decide(node, held.get(DIRECTORIES[node.directory]), rules, now, group=epoch is not None)
        if delete:
            doomed.append(node)
            reasons[node.path] = why
        else:
            report.keep(why)
    if dry_run:
        deleted = doomed
    else:
        deletion = delete_nodes(client, doomed, () if epoch is None else (epoch.check,))
        deleted = deletion.deleted
        report.keep(KEEP_CHANGED, len(deletion.changed))
        report.keep(KEEP_TAKEOVER, len(deletion.fenced))
        report.keep(KEEP_FAILED, len(deletion.failed))
        report.errors += deletion.errors
    report.deleted = [node.path.removeprefix(f"{root}/v1/") for node in deleted]
    report.extra["deleted_by_reason"] = dict(sorted(Counter(reasons[node.path] for node in deleted).items()))
    report.extra["swept_at"] = now  # the "now" every age was measured against
    report.extra["server_reachable"] = {kind: ids is not None for kind, ids in held.items()}
    report.extra["group_epoch"] = None if epoch is None else epoch.value
    return report
