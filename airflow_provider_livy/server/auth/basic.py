"""`livy.server.auth.type = basic`: HTTP basic credentials against a users file of bcrypt hashes.

Users files are made with `python -m airflow_provider_livy.server.security add-user FILE USER`.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

from airflow_provider_livy.server.auth.refusal import credentials_refused
from airflow_provider_livy.server.config import ConfigError


def hash_password(password: str) -> str:
    import bcrypt  # here and in BasicChecker: only servers with basic auth pay for it at start-up

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def read_users_file(path: str) -> dict[str, bytes]:
    """`user:bcrypt-hash` lines (htpasswd's bcrypt form); `#` comments."""
    users: dict[str, bytes] = {}
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read users file {path}: {err}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith("$2"):
            raise ConfigError(f"{path}:{number}: expected user:bcrypt-hash")
        users[user] = hashed.encode()
    return users


def add_user(path: str, user: str, password: str) -> None:
    """Add or replace one user in a users file, atomically, readable by its owner only."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ConfigError(f"user name {user!r} must be non-empty, without ':' or spaces")
    if not password:
        raise ConfigError("the password must not be empty")
    target = Path(path)
    lines = target.read_text().splitlines() if target.exists() else []
    kept = [line for line in lines if line.strip().partition(":")[0] != user]
    kept.append(f"{user}:{hash_password(password)}")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(kept) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def parse_basic(header: bytes | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class BasicChecker:
    """bcrypt is slow by design: the gate runs `check` off the event loop and caches what passes."""

    challenge = b'Basic realm="livy"'

    def __init__(self, users: dict[str, bytes]) -> None:
        import bcrypt

        self._bcrypt = bcrypt
        self.users = users
        # Checked against when the user is unknown, so a wrong user name costs as long as a wrong password.
        self._dummy_hash = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))

    def check(self, header: bytes) -> tuple[str, tuple[tuple[bytes, bytes], ...]]:
        credentials = parse_basic(header)
        if credentials is None:
            raise credentials_refused()
        user, password = credentials
        hashed = self.users.get(user)
        if not (self._bcrypt.checkpw(password.encode(), hashed or self._dummy_hash) and hashed is not None):
            raise credentials_refused()
        return user, ()
