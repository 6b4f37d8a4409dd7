"""The ZooKeeper state store: Livy's znodes under `/<key-prefix>/v1/batch`, plus the index (stores.index).

Every write is one kazoo transaction sent asynchronously and awaited on the event loop, so a
POST costs one round trip (record, index entry and id counter together) and the loop never
blocks on ZooKeeper. Requests from one session are applied in the order they were sent, so
fire-and-forget state updates land in order.

When the connection is lost, reads are unaffected (they never touch the store), creations are
refused with StoreUnavailable (503), and other writes are remembered by id. Once kazoo is
connected again, those ids are written from what memory holds then: the store catches up.

Bulk deletes go as `Deletes` (zookeeper_multi), a transaction serialized in one pass and sent through kazoo's
connection like kazoo's own requests: kazoo's `TransactionRequest` normalizes each path and
builds several objects per operation, which for a purge of ~80,000 znodes cost more CPU than
ZooKeeper's work. With it, a restart's purge of 78,000 znodes costs this process 0.27 s of CPU
in 1.2 s: the rest is ZooKeeper's. A removal is sent from the call on, without the event loop, so
recovery starts its purge as soon as it knows what expired, while the server is still starting.
Records are read with ZooKeeper's multi-read (zookeeper_multi), 1,000 per request.

With several servers on one ZooKeeper (recovery mode ha), the store is given the leader's `Fence`
(server.fence): every transaction starts with its checks, so a server that no longer leads writes
nothing. A refused write is dropped, not retried; a write made while the fence is held (the
connection suspended) is kept as unwritten, as when ZooKeeper is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kazoo.client import KazooState, TransactionRequest
from kazoo.exceptions import AuthFailedError, KazooException, NoAuthError, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.paths import normpath
from kazoo.retry import KazooRetry

from airflow_provider_livy.server.fence import Fence, FenceHeld, FenceRefused, failures_of
from airflow_provider_livy.server.stores.base import RecordLookup, StoreUnavailable
from airflow_provider_livy.server.stores.index import (
    STATE_KEY,
    Snapshot,
    build_snapshot,
    chunks,
    decode_state,
    encode,
    encode_state,
    entry_id,
    entry_name,
    family_dirs,
)
from airflow_provider_livy.zookeeper_auth import AUTH_KEY, ZooKeeperAuth, creator_acl, is_open, new_client
from airflow_provider_livy.zookeeper_multi import Deletes, read_many

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # at start-up: unreachable after this long is a clear error, not a hang
SESSION_TIMEOUT = 15.0
REQUEST_TIMEOUT = 10.0
TRANSACTION_OPS = 1000  # well under ZooKeeper's 1 MB request limit
RESYNC_RETRY_DELAY = 1.0
REMOVE_WINDOW = 8  # removal transactions in flight at once
RESYNC_CHUNK = 300  # ids per transaction: each may need up to 3 operations


def _settle(future: asyncio.Future[Any], result: IAsyncResult) -> None:
    if future.done():
        return
    try:
        future.set_result(result.get_nowait())
    except Exception as err:
        future.set_exception(err)


async def wait(result: IAsyncResult) -> Any:
    """A kazoo asynchronous result, awaited on the event loop (kazoo calls back from its own thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    result.rawlink(lambda done: loop.call_soon_threadsafe(_settle, future, done))
    return await asyncio.wait_for(future, REQUEST_TIMEOUT)


async def _nothing() -> None:
    return None


async def _raise(error: Exception) -> None:
    raise error


async def commit(transaction: TransactionRequest, fence: Fence | None = None, checks: int = 0) -> None:
    await committed(transaction.commit_async(), fence, checks)


async def committed(sent: IAsyncResult, fence: Fence | None = None, checks: int = 0) -> None:
    """Raise the first real failure of a sent transaction (kazoo returns them in the result list);
    FenceRefused when the failure is the fence's (its `checks` operations head the transaction)."""
    results = await wait(sent)
    if fence is not None and (refused := fence.refusal(results, checks)) is not None:
        raise refused
    failures = failures_of(results)
    if failures:
        raise failures[0]


class ZooKeeperStore:
    def __init__(
        self,
        hosts: str,
        prefix: str = "livy",
        connect_timeout: float = CONNECT_TIMEOUT,
        family: str = "batch",
        *,
        auth: ZooKeeperAuth | None = None,
        fence: Fence | None = None,
    ) -> None:
        root = "/" + prefix.strip("/")
        self.hosts = hosts
        self.auth = auth
        self.fence = fence
        records, index = family_dirs(family)
        self.batch_path = f"{root}/{records}"
        self.index_path = f"{root}/{index}"
        self.state_path = f"{self.batch_path}/{STATE_KEY}"
        retry = {"delay": 0.1, "backoff": 2, "max_delay": 2.0}
        try:
            self.client = new_client(
                hosts,
                auth,
                timeout=SESSION_TIMEOUT,
                connection_retry=KazooRetry(max_tries=-1, **retry),
                command_retry=KazooRetry(max_tries=5, **retry),
            )
        except ValueError as err:
            raise ConnectionError(
                f"livy.server.recovery.state-store.url = {hosts!r} is not a ZooKeeper connect string ({err})"
            ) from None
        try:
            self.client.start(timeout=connect_timeout)
        except KazooTimeoutError:
            self._shut()
            raise ConnectionError(
                f"ZooKeeper at {hosts} is unreachable (no connection within {connect_timeout:g}s); "
                "check livy.server.recovery.state-store.url and that ZooKeeper is running"
            ) from None
        self.connected = True
        self.client.add_listener(self._on_state)
        # The paths as sent on the wire (chroot included), for the requests built without kazoo's per-call checks.
        self._wire_batch = normpath(f"{self.client.chroot}{self.batch_path}")
        self._wire_index = normpath(f"{self.client.chroot}{self.index_path}")
        try:
            for path in (self.batch_path, self.index_path):
                self.client.retry(self.client.ensure_path, path)
            with contextlib.suppress(NodeExistsError):
                self.client.retry(self.client.create, self.state_path, encode_state(0))
            if auth is not None:
                self._restrict((root, f"{root}/v1", self.batch_path, self.index_path, self.state_path))
        except AuthFailedError:  # SASL answers after the connection is up: a wrong login fails the first request
            self._shut()
            raise ConnectionError(
                f"ZooKeeper at {hosts} refused the login as {auth.describe() if auth else '?'} ({AUTH_KEY})"
            ) from None
        except NoAuthError:
            self._shut()
            raise ConnectionError(
                f"ZooKeeper at {hosts} denies this server access to {root} "
                f"({'as ' + auth.describe() if auth else 'without an identity'}; see {AUTH_KEY})"
            ) from None
        except KazooException as err:  # e.g. the connection closed by a SASL mechanism that could not start
            self._shut()
            raise ConnectionError(f"ZooKeeper at {hosts}: preparing {root} failed ({type(err).__name__})") from None
        if auth is None and family == "interactive":
            log.warning(
                "ZooKeeper records under %s are readable and writable by anyone who can reach %s, and carry the "
                "secret of each interactive session's driver channel: set %s (see the README's security section)",
                root,
                hosts,
                AUTH_KEY,
            )
        self._present: set[int] = set()  # ids whose record znode exists
        self._unsure: set[int] = set()  # ids whose record may still have the open ACL: re-created on the next write
        self._index: dict[int, str] = {}  # id -> its index znode
        self._dirty: set[int] = set()  # ids whose znodes must be brought back in line with memory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resyncing = False
        self._lookup: RecordLookup = lambda _id: None
        self._next_id: Callable[[], int] = lambda: 0
        if fence is not None:
            fence.when_armed(self._kick_soon)

    def _restrict(self, paths: tuple[str, ...]) -> None:
        """Our own nodes, written open by an older version or by Apache Livy, get the creator-only ACL."""
        for path in paths:
            acls, _ = self.client.retry(self.client.get_acls, path)
            if is_open(acls):
                self.client.retry(self.client.set_acls, path, creator_acl())
                log.info("ZooKeeper node %s was open to anyone; now only this server's identity may use it", path)

    def bind(self, lookup: RecordLookup, next_session_id: Callable[[], int]) -> None:
        self._lookup, self._next_id = lookup, next_session_id

    # --- connection state (called from kazoo's thread) ------------------------------------
    def _on_state(self, state: str) -> None:
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            if self.connected:
                log.warning("lost ZooKeeper at %s: serving reads, refusing creations until it is back", self.hosts)
            self.connected = False
        elif state == KazooState.CONNECTED and not self.connected:
            self.connected = True
            log.info("connected to ZooKeeper at %s again", self.hosts)
            self._kick_soon()

    def _kick_soon(self) -> None:
        """Catch up from any thread: reconnected, or the fence armed again."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: shutting down
                self._loop.call_soon_threadsafe(self._kick)

    def _guard(self, transaction: TransactionRequest) -> int:
        """The fence's checks at the head of a transaction (none without a fence); raises FenceHeld / FenceRefused."""
        return 0 if self.fence is None else self.fence.guard(transaction)

    # --- start-up -----------------------------------------------------------------------
    def scan(self) -> Snapshot:
        asked = (
            self.client.get_async(self.state_path),
            self.client.get_children_async(self.batch_path),
            self.client.get_children_async(self.index_path),
        )
        try:
            (state, _), records, index = (result.get(timeout=REQUEST_TIMEOUT) for result in asked)
        except (KazooException, KazooTimeoutError) as err:
            raise ConnectionError(f"reading the state store from ZooKeeper at {self.hosts} failed: {err!r}") from None
        snap = build_snapshot(decode_state(state), records, index)
        for chunk in chunks(snap.duplicates, TRANSACTION_OPS):
            transaction = self.client.transaction()
            try:
                self._guard(transaction)
            except (FenceHeld, FenceRefused):
                break  # tidying is the leader's; the duplicates do no harm meanwhile
            for name in chunk:
                transaction.delete(f"{self.index_path}/{name}")
            transaction.commit()
        self._present = set(snap.record_ids)
        self._unsure = set(snap.record_ids) if self.auth is not None else set()
        self._index = dict(snap.index)
        return snap

    def read_records(self, ids: Iterable[int]) -> list[tuple[int, bytes | None, float]]:
        """Multi-reads of 1,000, all sent before the first answer is awaited (pipelined gets on a server before 3.6)."""
        ids = list(ids)
        try:
            reads = read_many(self.client, [f"{self.batch_path}/{batch_id}" for batch_id in ids])
        except (KazooException, KazooTimeoutError) as err:
            raise ConnectionError(f"reading records from ZooKeeper at {self.hosts} failed: {err!r}") from None
        rows: list[tuple[int, bytes | None, float]] = []
        for batch_id, read in zip(ids, reads, strict=True):
            if isinstance(read, KazooException):
                raise ConnectionError(f"reading record {batch_id} from ZooKeeper at {self.hosts} failed: {read!r}")
            rows.append((batch_id, None, 0.0) if read is None else (batch_id, read[0], read[1].mtime / 1000))
        return rows

    # --- writing ------------------------------------------------------------------------
    def _record_ops(self, transaction: TransactionRequest, record: dict[str, Any]) -> None:
        """Write a record and move its index entry, given what we believe the store holds."""
        batch_id = record["id"]
        path, data = f"{self.batch_path}/{batch_id}", encode(record)
        unsure = batch_id in self._unsure
        if unsure:  # a setData keeps the open ACL: replace the znode (and its index entry) in the same transaction
            transaction.delete(path)
            transaction.create(path, data)
            self._unsure.discard(batch_id)
        elif batch_id in self._present:
            transaction.set_data(path, data)
        else:
            transaction.create(path, data)
            self._present.add(batch_id)
        name, old = entry_name(record), self._index.get(batch_id)
        if name != old or (unsure and old is not None):
            if old is not None:
                transaction.delete(f"{self.index_path}/{old}")
            transaction.create(f"{self.index_path}/{name}")
            self._index[batch_id] = name

    def save(self, record: dict[str, Any], next_session_id: int | None = None) -> Awaitable[None]:
        """The transaction is sent at the call: ZooKeeper applies one session's requests in the order sent."""
        self._loop = asyncio.get_running_loop()
        batch_id = record["id"]
        if not self.connected:
            self._dirty.add(batch_id)
            if next_session_id is not None:
                return _raise(StoreUnavailable(f"ZooKeeper at {self.hosts} is not connected; nothing was created, retry shortly"))
            return _nothing()
        transaction = self.client.transaction()
        try:
            checks = self._guard(transaction)
        except FenceHeld:
            self._dirty.add(batch_id)
            if next_session_id is not None:
                return _raise(StoreUnavailable("the ZooKeeper connection is suspended; nothing was created, retry shortly"))
            return _nothing()
        except FenceRefused as err:
            return _raise(StoreUnavailable(str(err))) if next_session_id is not None else _nothing()
        self._record_ops(transaction, record)
        if next_session_id is not None:
            transaction.set_data(self.state_path, encode_state(next_session_id))
        return self._settle_save(transaction.commit_async(), batch_id, next_session_id, checks)

    async def _settle_save(self, sent: IAsyncResult, batch_id: int, next_session_id: int | None, checks: int) -> None:
        try:
            await committed(sent, self.fence, checks)
        except FenceRefused as err:
            if next_session_id is not None:
                raise StoreUnavailable(str(err)) from None
        except (KazooException, TimeoutError) as err:
            self._dirty.add(batch_id)
            self._kick()
            if next_session_id is not None:
                raise StoreUnavailable(f"ZooKeeper at {self.hosts} did not take the record ({type(err).__name__})") from None
            log.warning("batch %s not written to ZooKeeper (%s); will write it once reconnected", batch_id, type(err).__name__)

    def save_many(self, records: list[dict[str, Any]]) -> Awaitable[None]:
        """Recovery's re-saves, many records per transaction, all sent at the call; what fails is re-synced."""
        self._loop = asyncio.get_running_loop()
        sent: list[tuple[list[int], IAsyncResult]] = []
        for chunk in chunks(records, RESYNC_CHUNK):
            ids = [record["id"] for record in chunk]
            if not self.connected:
                self._dirty.update(ids)
                continue
            transaction = self.client.transaction()
            try:
                checks = self._guard(transaction)
            except FenceHeld:
                self._dirty.update(ids)
                continue
            except FenceRefused:
                break
            for record in chunk:
                self._record_ops(transaction, record)
            sent.append((ids, checks, transaction.commit_async()))
        return self._settle_many(sent)

    async def _settle_many(self, sent: list[tuple[list[int], int, IAsyncResult]]) -> None:
        for ids, checks, result in sent:
            try:
                await committed(result, self.fence, checks)
            except FenceRefused:
                continue
            except (KazooException, TimeoutError) as err:
                self._dirty.update(ids)
                self._kick()
                log.warning("%d records not written to ZooKeeper (%s); will retry", len(ids), type(err).__name__)

    def remove(self, ids: Iterable[int]) -> Awaitable[None]:
        """Start removing now (even before the event loop runs); the awaitable ends when all answered.

        Transactions of up to 1,000 deletes, REMOVE_WINDOW in flight: each answer sends the next from
        kazoo's thread, so a POST or a read never queues behind a whole purge. What fails is re-synced.
        """
        ids = list(ids)
        try:
            checks = () if self.fence is None else self.fence.current()
        except FenceRefused as err:  # a DELETE answers 503: the leader still holds the record
            return _raise(StoreUnavailable(str(err)))
        except FenceHeld as err:  # written from memory if this server still leads once reconnected
            self._dirty.update(ids)
            return _raise(StoreUnavailable(str(err)))
        if not self.connected:
            self._dirty.update(ids)
            return _nothing()
        return self._settle_removal(self._send_removal(ids, checks))

    def _send_removal(self, ids: list[int], checks: tuple[tuple[str, int], ...] = ()) -> concurrent.futures.Future[list[int]]:
        """Send the delete transactions (each after the fence's checks); the future gives the ids whose removal failed."""
        wire_checks = tuple((normpath(f"{self.client.chroot}{path}"), version) for path, version in checks)
        pending: deque[tuple[list[int], Deletes]] = deque()
        for chunk in chunks(ids, TRANSACTION_OPS // 2):
            paths = []
            for batch_id in chunk:
                if batch_id in self._present:
                    paths.append(f"{self._wire_batch}/{batch_id}")
                if (name := self._index.get(batch_id)) is not None:
                    paths.append(f"{self._wire_index}/{name}")
                self._forget(batch_id)
            pending.append((chunk, Deletes(paths, wire_checks)))
        done: concurrent.futures.Future[list[int]] = concurrent.futures.Future()
        failed: list[int] = []
        refused: list[int] = []
        in_flight = 0
        lock = threading.RLock()  # kazoo calls back at once, in this thread, once its handler has stopped

        def send_next() -> None:
            nonlocal in_flight
            chunk, request = pending.popleft()
            in_flight += 1
            result = self.client.handler.async_result()
            result.rawlink(lambda answer: answered(chunk, answer))
            self.client._call(request, result)  # how kazoo's own *_async calls send

        def answered(chunk: list[int], answer: IAsyncResult) -> None:
            nonlocal in_flight
            try:
                results = answer.get_nowait()
                if self.fence is not None and self.fence.refusal(results, len(wire_checks)) is not None:
                    refused.extend(chunk)  # another server leads: nothing to retry
                    results = []
                failures = failures_of(results)
                if failures:
                    raise failures[0]
            except Exception as err:  # whatever it is, this chunk must still settle the removal
                log.warning("%d records not removed from ZooKeeper (%s); will retry", len(chunk), type(err).__name__)
                failed.extend(chunk)
            with lock:
                in_flight -= 1
                if pending:
                    send_next()
                elif in_flight == 0 and refused:
                    done.set_exception(StoreUnavailable("another server leads now; ZooKeeper refused the removal"))
                elif in_flight == 0:
                    done.set_result(failed)

        with lock:
            if not pending:
                done.set_result([])
            while pending and in_flight < REMOVE_WINDOW:
                send_next()
        return done

    async def _settle_removal(self, sent: concurrent.futures.Future[list[int]]) -> None:
        failed = await asyncio.wrap_future(sent)
        self._loop = asyncio.get_running_loop()
        if failed:
            self._dirty.update(failed)
            self._kick()

    # --- catching up ----------------------------------------------------------------------
    def _kick(self) -> None:
        if self._dirty and self.connected and not self._resyncing and self._loop is not None:
            self._resyncing = True
            self._loop.create_task(self._resync())

    async def _resync(self) -> None:
        try:
            while self._dirty and self.connected:
                ids, self._dirty = self._dirty, set()
                try:
                    await self._write_from_memory(sorted(ids))
                except FenceHeld:
                    self._dirty.update(ids)  # written once the fence is armed again (it kicks)
                    return
                except FenceRefused:
                    return  # another server leads and has its own view; this one's is stale
                except (KazooException, TimeoutError) as err:
                    self._dirty.update(ids)
                    log.warning("re-syncing %d batches with ZooKeeper failed (%s); retrying", len(ids), type(err).__name__)
                    await asyncio.sleep(RESYNC_RETRY_DELAY)
                else:
                    log.info("ZooKeeper re-synced with memory for %d batches", len(ids))
        finally:
            self._resyncing = False

    async def _write_from_memory(self, ids: list[int]) -> None:
        """List what is there, then write records, index entries and counter as memory has them now."""
        present = {int(n) for n in await wait(self.client.get_children_async(self.batch_path)) if n.isdigit()}
        entries: dict[int, list[str]] = {}
        for name in await wait(self.client.get_children_async(self.index_path)):
            if (batch_id := entry_id(name)) is not None:
                entries.setdefault(batch_id, []).append(name)
        for chunk in chunks(ids, RESYNC_CHUNK):
            transaction = self.client.transaction()
            checks = self._guard(transaction)
            for batch_id in chunk:
                self._forget(batch_id)
                if batch_id in present:
                    self._present.add(batch_id)
                    if self.auth is not None:
                        self._unsure.add(batch_id)
                known = entries.get(batch_id, [])
                record = self._lookup(batch_id)
                keep = entry_name(record) if record is not None else None
                if keep in known:
                    self._index[batch_id] = keep
                for name in known:
                    if name != keep:
                        transaction.delete(f"{self.index_path}/{name}")
                if record is not None:
                    self._record_ops(transaction, record)
                elif batch_id in present:
                    transaction.delete(f"{self.batch_path}/{batch_id}")
                    self._present.discard(batch_id)
            transaction.set_data(self.state_path, encode_state(self._next_id()))
            await commit(transaction, self.fence, checks)

    def _forget(self, batch_id: int) -> None:
        self._present.discard(batch_id)
        self._unsure.discard(batch_id)
        self._index.pop(batch_id, None)

    def close(self) -> None:
        self._shut()

    def _shut(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop()
            self.client.close()
