"""Who may touch our znodes: the ZooKeeper identity, and the ACL of every znode the server or the sweep creates.

Session records carry the secret of an interactive session's driver channel, so with an identity
configured (`livy.server.recovery.zk-state-store.auth`, or the `zookeeper_auth` extra of the
maintenance DAG's connection) every znode is created with ZooKeeper's creator ACL: all rights for
the identities this connection authenticated as, nothing for anyone else. The same value is
accepted in both places:

- `digest:<user>:<password>`: ZooKeeper's digest scheme, as Curator's `authorization` does; the
  ACL names `digest:<user>:<hash of the password>`.
- `sasl:DIGEST-MD5:<user>:<password>`: SASL with a user of the ensemble's JAAS `Server` section.
- `sasl` or `sasl:GSSAPI[:<service>]`: Kerberos from the process's credentials (its ticket cache, or
  the keytab in KRB5_CLIENT_KTNAME), for the server principal `<service>/<host>` (service
  `zookeeper`, ZooKeeper's default). Needs the `kerberos` package beside pure-sasl.

The ACL is the client's default ACL, which kazoo applies to every create, transaction creates
included; everything that writes our znodes makes its client with `new_client`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.security import ACL, CREATOR_ALL_ACL

AUTH_KEY = "livy.server.recovery.zk-state-store.auth"
GSSAPI_SERVICE = "zookeeper"
SHAPES = "digest:<user>:<password>, sasl:DIGEST-MD5:<user>:<password>, sasl or sasl:GSSAPI[:<service>]"


class ZooKeeperAuthError(ValueError):
    """An auth value that names no identity we can log in as; never echoes the value (it holds a password)."""


@dataclass(frozen=True)
class ZooKeeperAuth:
    """One identity: what kazoo sends at connect time. `repr` never shows the credentials."""

    scheme: str  # "digest" or "sasl"
    user: str  # the digest or DIGEST-MD5 user; the service for GSSAPI
    password: str = field(default="", repr=False)
    mechanism: str = ""  # SASL only: DIGEST-MD5 or GSSAPI

    def client_options(self) -> dict[str, Any]:
        """KazooClient arguments: the credentials, and the creator-only ACL as the default for every create."""
        options: dict[str, Any] = {"default_acl": CREATOR_ALL_ACL}
        if self.scheme == "digest":
            options["auth_data"] = [("digest", f"{self.user}:{self.password}")]
        elif self.mechanism == "DIGEST-MD5":
            options["sasl_options"] = {"mechanism": "DIGEST-MD5", "username": self.user, "password": self.password}
        else:
            options["sasl_options"] = {"mechanism": "GSSAPI", "service": self.user}
        return options

    def describe(self) -> str:
        """For log lines: the scheme and user, never the password."""
        return f"{self.scheme}:{self.mechanism + ':' if self.mechanism else ''}{self.user}"


def parse_auth(text: str | None, key: str = AUTH_KEY) -> ZooKeeperAuth | None:
    """The identity an auth value names; None for an empty value (no authentication, open ACLs)."""
    value = (text or "").strip()
    if not value:
        return None
    scheme, _, rest = value.partition(":")
    scheme = scheme.lower()
    if scheme == "digest":
        user, sep, password = rest.partition(":")
        if user and sep and password:
            return ZooKeeperAuth("digest", user, password)
    elif scheme == "sasl":
        mechanism, _, credentials = rest.partition(":")
        mechanism = (mechanism or "GSSAPI").upper()
        if mechanism == "GSSAPI" and ":" not in credentials:
            if importlib.util.find_spec("kerberos") is None:  # pure-sasl's GSSAPI; without it kazoo just drops the connection
                raise ZooKeeperAuthError(
                    f"{key}: sasl (GSSAPI) needs the kerberos package beside pure-sasl (pip install kerberos)"
                )
            return ZooKeeperAuth("sasl", credentials or GSSAPI_SERVICE, mechanism="GSSAPI")
        user, sep, password = credentials.partition(":")
        if mechanism == "DIGEST-MD5" and user and sep and password:
            return ZooKeeperAuth("sasl", user, password, mechanism="DIGEST-MD5")
    raise ZooKeeperAuthError(f"{key}: expected one of {SHAPES} (the value is not repeated here: it may hold a password)")


def new_client(hosts: str, auth: ZooKeeperAuth | None, **options: Any) -> KazooClient:
    """A kazoo client that logs in as `auth` and creates every znode with the creator-only ACL (open ACLs without it)."""
    return KazooClient(hosts=hosts, **(auth.client_options() if auth is not None else {}), **options)


def is_open(acls: list[ACL]) -> bool:
    """Whether anyone at all has a right on the znode (ZooKeeper's world:anyone, as written without an identity)."""
    return any(acl.id.scheme == "world" for acl in acls)


def creator_acl() -> list[ACL]:
    """The ACL our znodes get (and older ones are set to): all rights for the creating connection's identities."""
    return list(CREATOR_ALL_ACL)
