"""Where records survive a restart: the store interface, the filesystem and ZooKeeper stores, the index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.stores.base import RecoverableStore

if TYPE_CHECKING:  # the fence needs kazoo; a filesystem store runs without it
    from airflow_provider_livy.server.fence import Fence


def open_store(config: ServerConfig, family: str = "batch", fence: Fence | None = None) -> RecoverableStore:
    """The store of one family of sessions ("batch" or "interactive"), each under its own Livy directory;
    in recovery mode ha, ZooKeeper writes carry the leader's `fence`."""
    if config.state_store == "zookeeper":
        from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore
        from airflow_provider_livy.zookeeper_auth import parse_auth

        return ZooKeeperStore(
            config.state_store_url, config.zk_key_prefix, family=family, auth=parse_auth(config.zk_auth), fence=fence
        )
    from airflow_provider_livy.server.stores.filesystem import FileSystemStore

    return FileSystemStore(config.state_store_url, family)
