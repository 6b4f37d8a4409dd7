"""The ZooKeeper store's connection: a kazoo client started, its directories prepared, clear errors.

An unreachable ZooKeeper, a login refused, or a prefix this server may not use is a ConnectionError
naming the setting to fix, raised at start-up rather than at the first write. With an identity, our
own directories found open (written by an older version or by Apache Livy) get the creator-only ACL.
"""

from __future__ import annotations

import contextlib
import logging

from kazoo.client import KazooClient
from kazoo.exceptions import AuthFailedError, KazooException, NoAuthError, NodeExistsError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

from airflow_provider_livy.server.stores.index import encode_state
from airflow_provider_livy.zookeeper_auth import AUTH_KEY, ZooKeeperAuth, creator_acl, is_open, new_client

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # at start-up: unreachable after this long is a clear error, not a hang
SESSION_TIMEOUT = 15.0


def open_client(hosts: str, auth: ZooKeeperAuth | None, connect_timeout: float) -> KazooClient:
    retry = {"delay": 0.1, "backoff": 2, "max_delay": 2.0}
    try:
        client = new_client(
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
        client.start(timeout=connect_timeout)
    except KazooTimeoutError:
        shut(client)
        raise ConnectionError(
            f"ZooKeeper at {hosts} is unreachable (no connection within {connect_timeout:g}s); "
            "check livy.server.recovery.state-store.url and that ZooKeeper is running"
        ) from None
    return client


def prepare(
    client: KazooClient, hosts: str, auth: ZooKeeperAuth | None, root: str, *, dirs: tuple[str, str], state_path: str
) -> None:
    """Create the record and index directories and the id counter; with an identity, close what is open."""
    try:
        for path in dirs:
            client.retry(client.ensure_path, path)
        with contextlib.suppress(NodeExistsError):
            client.retry(client.create, state_path, encode_state(0))
        if auth is not None:
            restrict(client, (root, f"{root}/v1", *dirs, state_path))
    except AuthFailedError:  # SASL answers after the connection is up: a wrong login fails the first request
        shut(client)
        raise ConnectionError(
            f"ZooKeeper at {hosts} refused the login as {auth.describe() if auth else '?'} ({AUTH_KEY})"
        ) from None
    except NoAuthError:
        shut(client)
        raise ConnectionError(
            f"ZooKeeper at {hosts} denies this server access to {root} "
            f"({'as ' + auth.describe() if auth else 'without an identity'}; see {AUTH_KEY})"
        ) from None
    except KazooException as err:  # e.g. the connection closed by a SASL mechanism that could not start
        shut(client)
        raise ConnectionError(f"ZooKeeper at {hosts}: preparing {root} failed ({type(err).__name__})") from None


def restrict(client: KazooClient, paths: tuple[str, ...]) -> None:
    """Our own nodes, written open by an older version or by Apache Livy, get the creator-only ACL."""
    for path in paths:
        acls, _ = client.retry(client.get_acls, path)
        if is_open(acls):
            client.retry(client.set_acls, path, creator_acl())
            log.info("ZooKeeper node %s was open to anyone; now only this server's identity may use it", path)


def warn_if_open(auth: ZooKeeperAuth | None, family: str, root: str, hosts: str) -> None:
    if auth is None and family == "interactive":
        log.warning(
            "ZooKeeper records under %s are readable and writable by anyone who can reach %s, and carry the "
            "secret of each interactive session's driver channel: set %s (see the README's security section)",
            root,
            hosts,
            AUTH_KEY,
        )


def shut(client: KazooClient) -> None:
    with contextlib.suppress(Exception):
        client.stop()
        client.close()
