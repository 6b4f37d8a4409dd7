"""A real ZooKeeper for tests: Debian's zookeeper package, on a free loopback port, in a temp dir.

`zookeeper` is one server for the whole session; tests stay apart by key prefix (`zk_prefix`).
A test that stops and restarts ZooKeeper takes `private_zookeeper`, a server of its own.
Every server accepts digest authentication (built into ZooKeeper) and SASL DIGEST-MD5 for the
users of SASL_USERS (a JAAS `Server` section and ZooKeeper's SASL authentication provider), so
ACL tests log in either way; clients without credentials connect as before.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

JAVA_DIR = Path("/usr/share/java")
# The server's own jars and what it loads at run time (netty for its connections, slf4j-nop keeps it quiet).
JARS = (
    "zookeeper",
    "zookeeper-jute",
    "netty-handler",
    "netty-common",
    "netty-buffer",
    "netty-transport",
    "netty-codec",
    "netty-resolver",
    "netty-transport-native-epoll",
    "netty-transport-native-unix-common",
    "slf4j-api",
    "slf4j-nop",
    "commons-cli",
    "metrics-core",
    "snappy-java",
)


SASL_USERS = {"livy": "livy-sasl-password", "intruder": "intruder-sasl-password"}
KERBEROS_PRINCIPAL = "zookeeper/localhost"  # what a client asks a ticket for: kazoo's service at the host it dials


@dataclass(frozen=True)
class KerberosLogin:
    """The server's Kerberos identity: its principal's keytab, and the realm's krb5.conf for the JVM."""

    principal: str
    keytab: Path
    krb5_conf: Path


def classpath() -> str:
    jars = [JAVA_DIR / f"{name}.jar" for name in JARS]
    if not jars[0].exists() or shutil.which("java") is None:
        pytest.skip("ZooKeeper is not installed (scripts/setup.sh --tests installs Debian's zookeeper package)")
    return ":".join(str(jar) for jar in jars if jar.exists())


@dataclass
class ZooKeeperServer:
    """One standalone ZooKeeper; stop() and start() again keep its port and data (a restart)."""

    work_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    kerberos: KerberosLogin | None = None

    @property
    def hosts(self) -> str:
        """By name under Kerberos: a GSSAPI client asks for a ticket to zookeeper/<the host it dials>."""
        return f"{'localhost' if self.kerberos else '127.0.0.1'}:{self.port}"

    def jaas(self) -> tuple[str, list[str]]:
        """ZooKeeper's JAAS `Server` section, and the JVM options it needs."""
        if self.kerberos is None:
            users = "".join(f'\n  user_{user}="{password}"' for user, password in SASL_USERS.items())
            return f"Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required{users};\n}};\n", []
        login = (
            f'useKeyTab=true keyTab="{self.kerberos.keytab}" storeKey=true useTicketCache=false isInitiator=false '
            f'principal="{self.kerberos.principal}"'
        )
        section = f"Server {{\n  com.sun.security.auth.module.Krb5LoginModule required {login};\n}};\n"
        return section, [f"-Djava.security.krb5.conf={self.kerberos.krb5_conf}"]

    def start(self, timeout: float = 60) -> ZooKeeperServer:
        from tests.conftest import free_port  # here, not at the top: conftest imports this module

        self.port = self.port or free_port()
        data_dir = self.work_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "zoo.cfg"
        conf.write_text(
            f"tickTime=500\ndataDir={data_dir}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n4lw.commands.whitelist=ruok\nmaxClientCnxns=0\n"
            "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n"
        )
        jaas = self.work_dir / "jaas.conf"
        section, jvm_options = self.jaas()
        jaas.write_text(section)
        with open(self.work_dir / "zookeeper.log", "ab") as out:
            self.proc = subprocess.Popen(
                [
                    "java",
                    "-Xmx256m",
                    f"-Djava.security.auth.login.config={jaas}",
                    *jvm_options,
                    "-cp",
                    classpath(),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    str(conf),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ZooKeeper did not start:\n{(self.work_dir / 'zookeeper.log').read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"ruok")
                return sock.recv(4) == b"imok"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")).start()
    yield server
    server.stop()


@pytest.fixture
def private_zookeeper(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper this test alone uses, so it may stop and restart it."""
    server = ZooKeeperServer(tmp_path / "zookeeper").start()
    yield server
    server.stop()


@pytest.fixture
def zk_prefix() -> str:
    """A key prefix of this test's own in the shared ZooKeeper."""
    return f"test-{uuid.uuid4().hex[:12]}"
