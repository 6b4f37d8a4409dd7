"""A real MIT Kerberos realm for the sign-in tests: k5test's KDC on loopback, in a temp dir.

Principals: HTTP/localhost (the server's, in http.keytab), HTTP/elsewhere (a service the server is not,
in the same keytab, so a ticket for it must be refused), users alice and bob (passwords), svc (a keytab).
Each user's tickets go to its own ccache. Its KDC listens on a port base of its own (k5test's default is
fixed, and a KDC a killed test left behind would answer the next realm's kinit).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import LivyServer

REALM = "KRBTEST.COM"
SERVICE = f"HTTP/localhost@{REALM}"
USERS = {"alice": "alice-Kerberos-1", "bob": "bob-Kerberos-2"}


def free_port_base(span: int = 10) -> int:
    """A port whose next `span` ports were free a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + span > 65535:
            continue
        try:
            for offset in range(span):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range for the KDC")


@dataclass
class Realm:
    k5: object
    tmpdir: Path
    env: dict[str, str]
    http_keytab: Path
    svc_keytab: Path

    def kinit(self, user: str, lifetime: str | None = None, ccache: str | None = None) -> Path:
        """A fresh ccache with the user's TGT (password for alice and bob, keytab for svc)."""
        path = self.tmpdir / (ccache or f"{user}.ccache")
        path.unlink(missing_ok=True)
        env = {**self.env, "KRB5CCNAME": f"FILE:{path}"}
        flags = ["-l", lifetime] if lifetime else []
        if user == "svc":
            self.k5.kinit(f"svc@{REALM}", flags=[*flags, "-k", "-t", str(self.svc_keytab)], env=env)
        else:
            self.k5.kinit(f"{user}@{REALM}", USERS[user], flags=flags, env=env)
        return path


@contextlib.contextmanager
def kerberos_realm() -> Iterator[Realm]:
    import k5test

    k5 = k5test.K5Realm(
        portbase=free_port_base(),
        create_host=False,
        get_creds=False,
        krb5_conf={"libdefaults": {"clockskew": "2", "rdns": "false", "dns_canonicalize_hostname": "false"}},
    )
    try:
        tmpdir = Path(k5.tmpdir)
        http_keytab, svc_keytab = tmpdir / "http.keytab", tmpdir / "svc.keytab"
        for name in ("HTTP/localhost", "HTTP/elsewhere"):
            k5.addprinc(name)
            k5.extract_keytab(name, str(http_keytab))
        for user, password in USERS.items():
            k5.addprinc(user, password)
        k5.addprinc("svc")
        k5.extract_keytab("svc", str(svc_keytab))
        env = {key: k5.env[key] for key in ("KRB5_CONFIG", "KRB5RCACHEDIR")}
        yield Realm(k5, tmpdir, env, http_keytab, svc_keytab)
    finally:
        daemons = list(k5._daemons)
        try:
            k5.stop()
        finally:  # a KDC that outlived stop() would answer the next realm's kinit
            for proc in daemons:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGKILL)


NAME_RULES = r"RULE:[1:$1@$0](bob@KRBTEST\.COM)s/bob@.*/robert/ DEFAULT"


@pytest.fixture(scope="module")
def realm() -> Iterator[Realm]:
    """One realm per test module; its KRB5_CONFIG is this process's (and the servers' it starts) while it lives."""
    saved = {key: os.environ.get(key) for key in ("KRB5_CONFIG", "KRB5RCACHEDIR", "KRB5CCNAME")}
    with kerberos_realm() as made:
        os.environ.update(made.env)
        os.environ["KRB5CCNAME"] = f"FILE:{made.tmpdir}/nobody.ccache"  # never the machine's own tickets
        try:
            yield made
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def kerberos_server(make_server: Callable[..., LivyServer], realm: Realm) -> Callable[..., LivyServer]:
    """Servers with Kerberos sign-in as HTTP/localhost, bob mapped to robert, access control and CSRF on."""

    def make(fake_spark: bool = True, port: int | None = None, **settings: str) -> LivyServer:
        return make_server(
            {
                "livy.server.auth.type": "kerberos",
                "livy.server.auth.kerberos.principal": SERVICE,
                "livy.server.auth.kerberos.keytab": str(realm.http_keytab),
                "livy.server.auth.kerberos.name-rules": NAME_RULES,
                "livy.server.access-control.enabled": "true",
                "livy.server.access-control.allowed-users": "alice,robert,svc",
                "livy.server.csrf-protection.enabled": "true",
                **settings,
            },
            fake_spark=fake_spark,
            port=port,
        )

    return make


def local_url(server: LivyServer) -> str:
    """The server by name: a client asks for a ticket to HTTP@<the URL's host>."""
    return server.url.replace("127.0.0.1", "localhost")
