"""Direct views of a state store's contents, for checking what the server wrote: files on disk, znodes via kazoo.

The `store` fixture runs a test once per store kind, with a fresh store of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from airflow_provider_livy.zookeeper_auth import new_client, parse_auth


class StoreView(Protocol):
    settings: dict[str, str]

    def records(self, family: str = "batch") -> dict[int, dict[str, Any]]: ...
    def index(self, family: str = "batch") -> list[str]: ...
    def next_session_id(self, family: str = "batch") -> int: ...
    def write(self, key: str, data: bytes) -> None: ...
    def close(self) -> None: ...


class FileStoreView:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = {
            "livy.server.recovery.mode": "recovery",
            "livy.server.recovery.state-store": "filesystem",
            "livy.server.recovery.state-store.url": str(root),
        }

    def records(self, family: str = "batch") -> dict[int, dict[str, Any]]:
        batch_dir = self.root / "v1" / family
        names = os.listdir(batch_dir) if batch_dir.exists() else []
        return {int(n): json.loads((batch_dir / n).read_bytes()) for n in names if n.isdigit()}

    def index(self, family: str = "batch") -> list[str]:
        index_dir = self.root / "v1" / f"{family}-index"
        return sorted(os.listdir(index_dir)) if index_dir.exists() else []

    def next_session_id(self, family: str = "batch") -> int:
        return json.loads((self.root / "v1" / family / "state").read_bytes())["nextSessionId"]

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def close(self) -> None:
        return None


class ZooKeeperView:
    """With `auth` (a zk-state-store.auth value) the view logs in as that identity and the server it configures does too."""

    def __init__(self, hosts: str, prefix: str, auth: str | None = None) -> None:
        self.prefix = prefix
        self.client: KazooClient = new_client(hosts, parse_auth(auth))
        self.client.start(timeout=30)  # a ZooKeeper just restarted on a busy machine takes a while
        self.settings = {
            "livy.server.recovery.mode": "recovery",
            "livy.server.recovery.state-store": "zookeeper",
            "livy.server.recovery.state-store.url": hosts,
            "livy.server.recovery.zk-state-store.key-prefix": prefix,
        }
        if auth:
            self.settings["livy.server.recovery.zk-state-store.auth"] = auth

    def _children(self, key: str) -> list[str]:
        try:
            return self.client.get_children(f"/{self.prefix}/{key}")
        except NoNodeError:
            return []

    def records(self, family: str = "batch") -> dict[int, dict[str, Any]]:
        """Records as they are now; one deleted between the listing and its read is gone, not an error."""
        found = {}
        for name in self._children(f"v1/{family}"):
            if name.isdigit():
                try:
                    found[int(name)] = json.loads(self.client.get(f"/{self.prefix}/v1/{family}/{name}")[0])
                except NoNodeError:
                    continue
        return found

    def index(self, family: str = "batch") -> list[str]:
        return sorted(self._children(f"v1/{family}-index"))

    def next_session_id(self, family: str = "batch") -> int:
        return json.loads(self.client.get(f"/{self.prefix}/v1/{family}/state")[0])["nextSessionId"]

    def write(self, key: str, data: bytes) -> None:
        path = f"/{self.prefix}/{key}"
        if self.client.exists(path):
            self.client.set(path, data)
        else:
            self.client.create(path, data, makepath=True)

    def close(self) -> None:
        self.client.stop()
        self.client.close()


def livy_record(batch_id: int, app_id: str | None = None) -> bytes:
    """A record exactly as Apache Livy writes it: its fields only, no timestamps, no process."""
    return json.dumps(
        {
            "id": batch_id,
            "name": None,
            "appId": app_id,
            "appTag": f"livy-batch-{batch_id}-AbCdEfGh",
            "owner": "alice",
            "proxyUser": None,
            "version": 1,
        }
    ).encode()


@pytest.fixture(params=["filesystem", "zookeeper"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreView]:
    if request.param == "filesystem":
        view: StoreView = FileStoreView(tmp_path / "state-store")
    else:
        zookeeper = request.getfixturevalue("zookeeper")
        view = ZooKeeperView(zookeeper.hosts, request.getfixturevalue("zk_prefix"))
    yield view
    view.close()
