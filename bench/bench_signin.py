"""Benchmark 14: what sign-in costs the polling call, and what a client's first request pays.

Four servers side by side, each holding one finished batch: no sign-in, basic (bcrypt's default cost),
ldap (a real slapd, tests/ldap_server.py) and kerberos (a real MIT KDC, tests/kerberos.py). wrk polls
`GET /batches/{id}/state` on each in turn, round after round, as a poller does: basic and ldap with the same
Authorization header every time, kerberos with the `livy.auth` cookie the first exchange gave it. The
figure is each type's requests/s over the no-sign-in server's in the same round, median over rounds.

The first request's added latency: servers with the sign-in cache off (`livy.server.auth.cache.ttl = 0s`),
so every request pays what a client's first one does (a bcrypt check, an LDAP bind, or the 401 and the
SPNEGO exchange with a fresh client), timed from the client against the same GET on the no-sign-in server.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests

from bench.bench_polling import CONNECTIONS, wrk
from bench.common import Row, livy_server, median, say, spread

TARGET_RATIO = 0.8
TYPES = ("basic", "ldap", "kerberos")
PASSWORD = "bench-Secret-1"


@contextlib.contextmanager
def directories(work_dir: Path) -> Iterator[tuple[object, object]]:
    from tests.kerberos import kerberos_realm
    from tests.ldap_server import ldap_directory

    with kerberos_realm() as realm, ldap_directory(work_dir / "ldap") as directory:
        yield realm, directory


def settings_for(kind: str, work_dir: Path, realm: object, directory: object, cache_ttl: str) -> dict[str, str]:
    from tests.kerberos import NAME_RULES, SERVICE
    from tests.ldap_server import BASE_DN

    common = {"livy.file.local-dir-whitelist": str(work_dir), "livy.server.auth.cache.ttl": cache_ttl}
    if kind == "none":
        return {"livy.file.local-dir-whitelist": str(work_dir)}
    if kind == "basic":
        import bcrypt

        users = work_dir / "users"
        users.write_text(f"alice:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt()).decode()}\n")
        return {**common, "livy.server.auth.type": "basic", "livy.server.auth.basic.users-file": str(users)}
    if kind == "ldap":
        return {
            **common,
            "livy.server.auth.type": "ldap",
            "livy.server.auth.ldap.url": directory.url,
            "livy.server.auth.ldap.base-dn": BASE_DN,
        }
    return {
        **common,
        "livy.server.auth.type": "kerberos",
        "livy.server.auth.kerberos.principal": SERVICE,
        "livy.server.auth.kerberos.keytab": str(realm.http_keytab),
        "livy.server.auth.kerberos.name-rules": NAME_RULES,
    }


def client_for(kind: str, realm: object) -> Callable[[], requests.Session]:
    """A new client of this kind, as a poller makes one."""
    from tests.ldap_server import PEOPLE

    def make() -> requests.Session:
        session = requests.Session()
        if kind == "basic":
            session.auth = ("alice", PASSWORD)
        elif kind == "ldap":
            session.auth = ("alice", PEOPLE["alice"])
        elif kind == "kerberos":
            import gssapi
            from requests_gssapi import HTTPSPNEGOAuth

            credentials = gssapi.Credentials(usage="initiate", store={"ccache": f"FILE:{realm.tmpdir}/alice.ccache"})
            session.auth = HTTPSPNEGOAuth(creds=credentials)
        return session

    return make


def poll_headers(kind: str, url: str, make: Callable[[], requests.Session]) -> list[str]:
    """What a poller sends on every call once signed in: its Authorization header, or the sign-in cookie."""
    session = make()
    answer = session.get(url, timeout=30)
    answer.raise_for_status()
    if kind == "kerberos":
        return [f"Cookie: livy.auth={session.cookies['livy.auth']}"]
    if kind in ("basic", "ldap"):
        user, password = session.auth
        return [f"Authorization: Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}"]
    return []


def local(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


@contextlib.contextmanager
def servers(work_dir: Path, realm: object, directory: object, cache_ttl: str) -> Iterator[dict[str, tuple[object, str]]]:
    """kind -> (server, the state URL of its one finished batch)."""
    job = work_dir / "job.py"
    job.write_text("print('fake job')\n")
    with contextlib.ExitStack() as stack:
        found = {}
        for kind in ("none", *TYPES):
            server = stack.enter_context(
                livy_server(work_dir / f"{kind}-{cache_ttl}", settings_for(kind, work_dir, realm, directory, cache_ttl))
            )
            server.session = client_for(kind, realm)()
            server.session.headers["X-Requested-By"] = "bench"
            server.url = local(server.url)
            batch = server.submit(file=str(job))
            server.wait_for(batch["id"])
            found[kind] = (server, f"{server.url}/batches/{batch['id']}/state")
        yield found


def run(work_dir: Path, quick: bool) -> list[Row]:
    rounds, seconds, threads, firsts = (3, 3, 2, 10) if quick else (5, 10, 2, 40)
    work_dir.mkdir(parents=True, exist_ok=True)
    with directories(work_dir) as (realm, directory):
        os.environ.update(realm.env)  # the servers this benchmark starts read the realm's krb5.conf
        realm.kinit("alice")
        os.environ["KRB5CCNAME"] = f"FILE:{realm.tmpdir}/alice.ccache"
        with servers(work_dir, realm, directory, "5m") as found:
            headers = {kind: poll_headers(kind, url, client_for(kind, realm)) for kind, (_server, url) in found.items()}
            say(f"sign-in polling: warm-up, then {rounds} rounds of {seconds}s per type, wrk -t{threads} -c{CONNECTIONS}")
            for kind, (_server, url) in found.items():
                wrk(url, 2, threads, headers[kind])
            rps: dict[str, list[float]] = {kind: [] for kind in found}
            for number in range(1, rounds + 1):
                for kind, (_server, url) in found.items():
                    rps[kind].append(wrk(url, seconds, threads, headers[kind])["rps"])
                say(f"sign-in round {number}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} req/s" for k, v in rps.items()))
            binds = sum(1 for dn in directory.binds() if dn.startswith("uid=alice"))
        with servers(work_dir, realm, directory, "0s") as uncached:
            latency: dict[str, list[float]] = {kind: [] for kind in uncached}
            for _ in range(firsts):
                for kind, (_server, url) in uncached.items():
                    client = client_for(kind, realm)()
                    start = time.perf_counter()
                    client.get(url, timeout=30).raise_for_status()
                    latency[kind].append((time.perf_counter() - start) * 1000)
                    client.close()
    bench = "14. sign-in"
    rows = [Row(bench, "no sign-in: requests/s", spread(rps["none"]), anchor="the same poll, no auth, same rounds")]
    for kind in TYPES:
        ratios = [ours / plain for ours, plain in zip(rps[kind], rps["none"], strict=True)]
        ratio = median(ratios)
        rows.append(
            Row(
                bench,
                f"{kind}: requests/s vs no sign-in",
                f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f}); {median(rps[kind]):.0f} req/s",
                target=f">= {TARGET_RATIO}",
                anchor="ratio per round, median",
                met=ratio >= TARGET_RATIO,
            )
        )
    rows.append(
        Row(bench, "ldap: binds during the polling rounds", str(binds), anchor="slapd's own log", note="cache on: 1 expected")
    )
    plain = median(latency["none"])
    for kind in TYPES:
        rows.append(
            Row(
                bench,
                f"{kind}: first request's added latency",
                f"{median(latency[kind]) - plain:.1f} ms (median of {firsts}; {median(latency[kind]):.1f} vs {plain:.1f} ms)",
                anchor="a new client's first GET against the same GET with no sign-in",
            )
        )
    return rows
