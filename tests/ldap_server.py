"""A real OpenLDAP directory for the sign-in tests: Debian's slapd with its own config, data and port.

Two people under ou=people,dc=example,dc=com (alice and bob, plain userPassword). slapd logs each
operation (`-d 256`, "stats"), so a test counts the binds the server made. It speaks TLS with a certificate
for 127.0.0.1 from a CA made here (`ca_file`): StartTLS on its ldap:// port, and an ldaps:// port.
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


def make_certificates(directory: Path, name: str = "ca") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, with openssl: (CA, certificate, key)."""
    ca_key, ca, key, request, cert = (directory / f"{name}.{ext}" for ext in ("ca.key", "ca.pem", "key", "csr", "pem"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name} test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(request))
    extensions = directory / f"{name}.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(cert),
    )
    return ca, cert, key


@dataclass
class Directory:
    url: str
    port: int
    config: Path
    log: Path
    ldaps_url: str = ""
    ca_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> None:
        """Started as its own process group, so a stop takes everything slapd started with it."""
        self.proc = subprocess.Popen(
            ["slapd", "-f", str(self.config), "-h", f"{self.url}/ {self.ldaps_url}/", "-d", "256"],
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

    def bind_strengths(self) -> dict[str, list[int]]:
        """DN -> the security strength factor (ssf; 0 is plain text) of each successful bind as it."""
        found: dict[str, list[int]] = {}
        for line in self.log.read_text().splitlines():
            if " BIND dn=" in line and " mech=SIMPLE" in line:
                dn = line.split(' dn="', 1)[1].split('"', 1)[0]
                found.setdefault(dn, []).append(int(line.rsplit(" ssf=", 1)[1].split()[0]))
        return found

    def binds(self) -> list[str]:
        """The DN of every bind slapd was asked for, in order (its request line; a success logs a second one)."""
        lines = self.log.read_text().splitlines()
        return [line.split(' dn="', 1)[1].split('"', 1)[0] for line in lines if " BIND dn=" in line and " method=" in line]


@contextlib.contextmanager
def ldap_directory(work_dir: Path) -> Iterator[Directory]:
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "data").mkdir()
    port, tls_port = free_port(), free_port()
    while tls_port == port:  # both were free a moment ago; the same one twice is not two ports
        tls_port = free_port()
    ca, cert, key = make_certificates(work_dir)
    config = work_dir / "slapd.conf"
    config.write_text(
        "\n".join(
            [
                *(f"include /etc/ldap/schema/{name}.schema" for name in ("core", "cosine", "nis", "inetorgperson")),
                f"pidfile {work_dir}/slapd.pid",
                f"TLSCACertificateFile {ca}",
                f"TLSCertificateFile {cert}",
                f"TLSCertificateKeyFile {key}",
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
    directory = Directory(
        f"ldap://127.0.0.1:{port}", port, config, work_dir / "slapd.log", ldaps_url=f"ldaps://127.0.0.1:{tls_port}", ca_file=ca
    )
    directory.start()
    try:
        yield directory
    finally:
        directory.stop()
