"""Kerberos principal names: their parts, and the `_HOST` pattern of a server's own principal."""

from __future__ import annotations

import ipaddress
import socket

HOST_PATTERN = "_HOST"


def split_principal(principal: str) -> list[str] | None:
    """`a/b@REALM` -> ['REALM', 'a', 'b'] ($0 is the realm, as in the name rules); None if it has no realm."""
    name, at, realm = principal.rpartition("@")
    if not at or not name or not realm:
        return None
    return [realm, *name.split("/")]


def server_principal(principal: str, host: str) -> str:
    """Replace `_HOST` as Hadoop's SecurityUtil does: the configured host name, lowercased, or this machine's
    canonical name when the server listens on an address (0.0.0.0, 127.0.0.1, ::) rather than a name."""
    if HOST_PATTERN not in principal:
        return principal
    name = host.strip()
    try:
        ipaddress.ip_address(name)
        is_address = True
    except ValueError:
        is_address = not name
    return principal.replace(HOST_PATTERN, (socket.getfqdn() if is_address else name).lower())
