"""A real OpenLDAP directory for the sign-in tests: Debian's slapd with its own config, data and port.

Two people under ou=people,dc=example,dc=com (alice and bob, plain userPassword). slapd logs each
operation (`-d 256`, "stats"), so a test counts the binds the server made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

BASE_DN = "ou=people,dc=example,dc=com"
PEOPLE = {"alice": "alice-Directory-1", "bob": "bob-Directory-2"}


@dataclass
class Directory:
    url: str
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> None:
        """Started as its own process group, so a stop takes everything slapd started with it."""
        self.proc = subprocess.Popen(
            ["slapd", "-f", str(self.config), "-h", self.url + "/", "-d", "256"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - the child keeps it
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("slapd did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def binds(self) -> list[str]:
        """The DN of every bind slapd was asked for, in order (its request line; a success logs a second one)."""
        lines = self.log.read_text().splitlines()
        return [line.split(' dn="', 1)[1].split('"', 1)[0] for line in lines if " BIND dn=" in line and " method=" in line]


@contextlib.contextmanager
def ldap_directory(work_dir: Path) -> Iterator[Directory]:
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "data").mkdir()
    port = free_port()
    config = work_dir / "slapd.conf"
    config.write_text(
        "\n".join(
            [
                *(f"include /etc/ldap/schema/{name}.schema" for name in ("core", "cosine", "nis", "inetorgperson")),
                f"pidfile {work_dir}/slapd.pid",
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "database mdb",
                "suffix dc=example,dc=com",
                "rootdn cn=admin,dc=example,dc=com",
                f"directory {work_dir}/data",
                "maxsize 10485760",
                "access to attrs=userPassword by anonymous auth by self read by * none",
                "access to * by * read",
                "",
            ]
        )
    )
    entries = [
        "dn: dc=example,dc=com\nobjectClass: domain\ndc: example\n",
        f"dn: {BASE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        *(
            f"dn: uid={user},{BASE_DN}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\nsn: {user}\n"
            f"userPassword: {password}\n"
            for user, password in PEOPLE.items()
        ),
    ]
    (work_dir / "data.ldif").write_text("\n".join(entries))
    subprocess.run(["slapadd", "-f", str(config), "-l", str(work_dir / "data.ldif")], check=True, capture_output=True, timeout=60)
    directory = Directory(f"ldap://127.0.0.1:{port}", port, config, work_dir / "slapd.log")
    directory.start()
    try:
        yield directory
    finally:
        directory.stop()
