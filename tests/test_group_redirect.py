"""A standby in redirect mode (`livy.server.ha.standby = redirect`): real servers on one real ZooKeeper, fake
spark-submit. It answers API requests `307` to the same path and query at the leader; what follows that, and
what does not: requests and curl, open and with basic or Kerberos sign-in, our hooks, pylivy and sparkmagic
unmodified.

Two groups for the module, each a leader and a redirecting standby: one open, one with basic sign-in (and a
proxying standby beside, for the contrast). The failover and Kerberos tests start their own.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.server.config import build_config
from airflow_provider_livy.server.group import LEADER_HEARD_FOR
from tests import kerberos
from tests.client_venv import client_python
from tests.conftest import FAKE_SPARK_HOME, LivyServer, free_port, kill_drivers, start_server
from tests.kerberos import local_url
from tests.test_group import SESSION_TIMEOUT, group, ha_settings, ready, wait_leading  # noqa: F401 (group is a fixture)
from tests.test_security import PASSWORDS, write_users_file
from tests.test_session_clients import run_client

pytestmark = pytest.mark.zookeeper
realm = kerberos.realm  # the fixtures, for this module
kerberos_server = kerberos.kerberos_server
REDIRECT = {"livy.server.ha.standby": "redirect"}
ALICE = ("alice", PASSWORDS["alice"])


def start_group(zookeeper, work_dir: Path, *standbys: dict[str, str], **settings: str) -> list[LivyServer]:
    """A leader, then a standby for each of `standbys` (its own settings), all with `settings`."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    servers: list[LivyServer] = []
    for own in ({}, *standbys):
        port = free_port()
        conf = {"livy.server.spark-home": str(FAKE_SPARK_HOME), **ha_settings(zookeeper.hosts, prefix, port), **settings, **own}
        servers.append(start_server(work_dir, conf, port=port))
        wait_leading(servers[0], 30)
    return servers


@pytest.fixture(scope="module")
def open_pair(zookeeper, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LivyServer, LivyServer, Path]]:
    """A leader and a redirecting standby, no sign-in, and their whitelisted directory."""
    work_dir = tmp_path_factory.mktemp("redirect")
    servers = start_group(zookeeper, work_dir, REDIRECT)
    yield servers[0], servers[1], work_dir
    for server in servers:
        server.stop()
    kill_drivers(work_dir)


@pytest.fixture(scope="module")
def signed_in_group(zookeeper, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LivyServer]]:
    """Basic sign-in on every server: the leader, a redirecting standby, a proxying standby."""
    work_dir = tmp_path_factory.mktemp("redirect-signed-in")
    users = write_users_file(work_dir)
    auth = {"livy.server.auth.type": "basic", "livy.server.auth.basic.users-file": str(users)}
    servers = start_group(zookeeper, work_dir, REDIRECT, {}, **auth)
    yield servers
    for server in servers:
        server.stop()
    kill_drivers(work_dir)


def job(work_dir: Path) -> str:
    path = work_dir / "job.py"
    path.write_text("print('fake job')\n")
    return str(path)


def named(server: LivyServer, name: str) -> list[int]:
    return [b["id"] for b in server.get("/batches", params={"size": 1000}).json()["sessions"] if b["name"] == name]


def test_the_standby_key() -> None:
    zk = [("livy.server.recovery.mode", "ha"), ("livy.server.recovery.state-store", "zookeeper")]
    zk.append(("livy.server.recovery.state-store.url", "127.0.0.1:2181"))
    assert build_config(zk).ha_standby == "proxy"
    assert build_config([*zk, ("livy.server.ha.standby", " Redirect")]).ha_standby == "redirect"


def test_a_redirecting_standby_answers_307_to_the_same_path_and_query_at_the_leader(open_pair) -> None:
    leader, standby, work_dir = open_pair
    asked = requests.get(f"{standby.url}/batches?from=0&size=2", allow_redirects=False, timeout=10)
    assert asked.status_code == 307 and asked.headers["Location"] == f"{leader.url}/batches?from=0&size=2"
    assert asked.json() == {"msg": f"this server stands by: the leader of its group is {leader.url}"}
    before = leader.batch_ids()
    body = {"file": job(work_dir), "name": f"not-followed-{uuid.uuid4().hex[:8]}"}
    posted = standby.session.post(f"{standby.url}/batches", json=body, allow_redirects=False, timeout=10)
    assert posted.status_code == 307 and posted.headers["Location"] == f"{leader.url}/batches"
    assert leader.batch_ids() == before  # the standby did nothing with it
    deleted = requests.delete(f"{standby.url}/batches/12345", allow_redirects=False, timeout=10)
    assert (deleted.status_code, deleted.headers["Location"]) == (307, f"{leader.url}/batches/12345")
    # its own answers stay its own, and the UI is proxied as in proxy mode: the leader's page, saying so
    assert ready(standby) == (503, {"role": "standby", "leader": leader.url})
    assert requests.get(f"{standby.url}/version", allow_redirects=False, timeout=10).status_code == 200
    assert "livy_ha_leader 0.0" in requests.get(f"{standby.url}/metrics", allow_redirects=False, timeout=10).text
    page = requests.get(f"{standby.url}/ui", allow_redirects=False, timeout=10)
    assert page.status_code == 200 and '<span class="group">leader · epoch ' in page.text


def test_requests_and_curl_following_the_307_reach_the_leader_and_a_post_keeps_its_body(open_pair) -> None:
    leader, standby, work_dir = open_pair
    name = f"followed-{uuid.uuid4().hex[:8]}"
    created = standby.session.post(f"{standby.url}/batches", json={"file": job(work_dir), "name": name}, timeout=10)
    assert created.status_code == 201, created.text
    assert [(r.status_code, r.request.method) for r in created.history] == [(307, "POST")]
    assert created.url == f"{leader.url}/batches" and created.json()["name"] == name
    assert named(leader, name) == [created.json()["id"]]  # created once, from the body the 307 kept
    batch = created.json()["id"]
    assert leader.wait_for(batch)["state"] == "success"
    state = requests.get(f"{standby.url}/batches/{batch}/state", timeout=10)
    assert state.json() == {"id": batch, "state": "success"} and state.history[0].status_code == 307
    # curl follows nothing without -L: it shows the 307 and where to; with -L it re-sends the POST and its body
    shown = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"{standby.url}/batches/{batch}")
    assert shown == f"307 {leader.url}/batches/{batch}"
    curl_name = f"curl-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"file": job(work_dir), "name": curl_name})
    made = curl("-L", "-H", "Content-Type: application/json", "-d", body, f"{standby.url}/batches")
    assert named(leader, curl_name) == [json.loads(made)["id"]]
    gone = requests.delete(f"{standby.url}/batches/{batch}", timeout=10)
    assert gone.json() == {"msg": "deleted"} and leader.get(f"/batches/{batch}").status_code == 404


def curl(*args: str) -> str:
    done = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_a_signed_in_client_loses_its_credentials_on_the_307_where_the_proxy_keeps_them(
    signed_in_group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every server on 127.0.0.1, only the ports differ: requests drops Authorization on the redirect (same host,
    another port), and so does curl -L; the proxying standby passes it on as sent."""
    leader, redirecting, proxying = signed_in_group
    client = requests.Session()
    client.auth = ALICE
    assert client.get(f"{leader.url}/batches", timeout=10).status_code == 200
    assert client.get(f"{proxying.url}/batches", timeout=10).status_code == 200
    followed = client.get(f"{redirecting.url}/batches", timeout=10)
    assert [r.status_code for r in followed.history] == [307] and followed.url == f"{leader.url}/batches"
    assert "Authorization" in followed.history[0].request.headers and "Authorization" not in followed.request.headers
    assert followed.status_code == 401
    signed = ("-u", f"{ALICE[0]}:{ALICE[1]}", "-o", "/dev/null", "-w", "%{http_code}")
    assert curl(*signed, "-L", f"{redirecting.url}/batches") == "401"
    assert curl(*signed, "-L", "--location-trusted", f"{redirecting.url}/batches") == "200"  # trusted by hand
    # requests does sign the followed request in again from a .netrc (it is looked up by host, not port)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {ALICE[0]} password {ALICE[1]}\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert requests.get(f"{redirecting.url}/batches", timeout=10).status_code == 200


def test_our_hooks_move_on_at_the_307_to_the_next_server_or_follow_it_with_one(open_pair, signed_in_group, monkeypatch) -> None:
    """A connection listing the redirecting standby first, then the leader: the hook does not follow the 307, it
    moves on to the next server, at once. A connection naming the redirecting standby alone: requests follows the
    307 (our headers kept), and with the connection's login the leader refuses it, the credentials dropped."""
    leader, standby, work_dir = open_pair
    conn = {"conn_type": "livy_batch", "host": f"127.0.0.1:{standby.port},127.0.0.1:{leader.port}"}
    monkeypatch.setenv("AIRFLOW_CONN_REDIRECT_FIRST", json.dumps(conn))
    slept: list[float] = []
    hook = LivyHook("redirect_first", sleep=slept.append)
    name = f"hook-{uuid.uuid4().hex[:8]}"
    view = hook.submit_batch({"file": job(work_dir), "args": ["sleep=0"], "name": name})
    assert named(leader, name) == [view["id"]] and slept == [0.0]  # passed the standby once, at once
    assert hook.poll_batch_state(view["id"], wait=10) in ("running", "success")
    assert hook.discard_batch(view["id"])
    alone = {"conn_type": "livy_batch", "host": "127.0.0.1", "port": standby.port}
    monkeypatch.setenv("AIRFLOW_CONN_REDIRECT_ALONE", json.dumps(alone))
    hook = LivyHook("redirect_alone", sleep=slept.append)
    name = f"alone-{uuid.uuid4().hex[:8]}"
    view = hook.submit_batch({"file": job(work_dir), "args": ["sleep=0"], "name": name})
    assert named(leader, name) == [view["id"]] and slept == [0.0]  # followed: no retry
    assert hook.discard_batch(view["id"])
    _signed_leader, redirecting, proxying = signed_in_group
    for server in (redirecting, proxying):
        signed = {**alone, "port": server.port, "login": ALICE[0], "password": ALICE[1]}
        monkeypatch.setenv(f"AIRFLOW_CONN_SIGNED_{server.port}", json.dumps(signed))
    assert list(LivyHook(f"signed_{proxying.port}").list_batches()) == []
    with pytest.raises(LivyError) as refused:
        list(LivyHook(f"signed_{redirecting.port}", sleep=slept.append).list_batches())
    assert refused.value.status == 401 and slept == [0.0], refused.value


def pylivy(url: str, auth: tuple[str, str] | None, work_dir: Path) -> dict:
    """pylivy 0.8 unmodified in the clients' virtualenv: a batch created, waited for and killed, then a session's
    statement (the fake spark-submit's REPL runs plain Python); or the error it raised."""
    script = """
import json, sys
from livy import LivyBatch, LivySession, SessionKind
url, auth, job = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
auth = tuple(auth) if auth else None
try:
    batch = LivyBatch.create(url, job, auth=auth, name="pylivy-" + url.rsplit(":", 1)[1])
    seen = {"batch": batch.batch_id, "state": batch.wait().value, "log": batch.log()}
    batch.kill()
    with LivySession.create(url, kind=SessionKind.PYSPARK, auth=auth) as session:
        seen["run"] = session.run("print(6 * 7)").text.strip()
except Exception as err:
    seen = {"error": type(err).__name__, "text": str(err)}
print(json.dumps(seen))
"""
    args = [str(client_python()), "-c", script, url, json.dumps(auth), job(work_dir)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def sparkmagic_sessions(url: str, auth: list[str] | str | None) -> dict:
    """sparkmagic 0.23's own HTTP client (its retry policy; its Basic authenticator for [user, password], its
    Kerberos one for "kerberos") listing the sessions; on a failure its error, and what requests raised."""
    script = """
import json, sys
import requests
from sparkmagic.livyclientlib.endpoint import Endpoint
from sparkmagic.livyclientlib.exceptions import HttpClientException
from sparkmagic.livyclientlib.linearretrypolicy import LinearRetryPolicy
from sparkmagic.livyclientlib.reliablehttpclient import ReliableHttpClient
from sparkmagic.auth.basic import Basic
from sparkmagic.auth.kerberos import Kerberos
url, auth = sys.argv[1], json.loads(sys.argv[2])
class Args:
    user, password, url = (auth if isinstance(auth, list) else ["", ""]) + [url]
authenticator = Kerberos() if auth == "kerberos" else Basic(Args()) if auth else None
client = ReliableHttpClient(Endpoint(url, authenticator), {"Content-Type": "application/json"}, LinearRetryPolicy(0.1, 2))
try:
    print(json.dumps({"total": client.get("/sessions", [200]).json()["total"]}))
except HttpClientException as err:
    try:
        requests.get(url + "/sessions", auth=Kerberos() if auth == "kerberos" else authenticator, timeout=10)
        cause = None
    except requests.RequestException as raised:
        cause = type(raised).__name__
    print(json.dumps({"error": str(err), **({"cause": cause} if cause else {})}))
"""
    done = subprocess.run(
        [str(client_python()), "-c", script, url, json.dumps(auth)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pylivy_and_sparkmagic_through_a_redirecting_standby(open_pair, signed_in_group) -> None:
    """Open, both follow the 307 (requests does) and work. With basic sign-in, both fail at the leader with a 401:
    the credentials were dropped on the redirect. Through a proxying standby the same signed-in calls work."""
    leader, standby, work_dir = open_pair
    seen = pylivy(standby.url, None, work_dir)
    assert seen["run"] == "42" and seen["state"] == "success", seen
    assert f"Submitted application: {job(work_dir)}" in seen["log"][1], seen  # the POST's body reached the leader
    assert leader.get(f"/batches/{seen['batch']}").status_code == 404  # pylivy's DELETE followed the 307 too
    assert sparkmagic_sessions(standby.url, None) == {"total": len(leader.get("/sessions").json()["sessions"])}
    signed_leader, redirecting, proxying = signed_in_group
    refused = pylivy(redirecting.url, ALICE, signed_leader.work_dir)
    assert refused["error"] == "HTTPError" and refused["text"].startswith("401 "), refused
    assert f"for url: {signed_leader.url}/batches" in refused["text"], refused  # at the leader, without credentials
    assert pylivy(proxying.url, ALICE, signed_leader.work_dir)["run"] == "42"
    magic = sparkmagic_sessions(redirecting.url, list(ALICE))
    assert magic["error"].startswith(f"Invalid status code '401' from {redirecting.url}/sessions"), magic
    assert sparkmagic_sessions(proxying.url, list(ALICE)) == {"total": 0}


def test_after_a_kill_9_a_redirecting_standby_answers_503_until_it_takes_over(group, job_file) -> None:  # noqa: F811
    """Until the dead leader's ZooKeeper session expires, its election node says it leads. A standby that heard
    from it within LEADER_HEARD_FOR still redirects there; past that it asks the leader's /ready, gets no answer
    and answers 503 + Retry-After, which clients retry, instead of sending them to a refused connection. Once the
    standby leads it serves itself, no 307."""
    first = group()
    wait_leading(first, 30)
    second = group(**REDIRECT)
    batch = first.submit(file=job_file, args=["sleep=0"])["id"]
    first.wait_for(batch)
    pointed = requests.get(f"{second.url}/batches/{batch}", allow_redirects=False, timeout=10)
    assert (pointed.status_code, pointed.headers["Location"]) == (307, f"{first.url}/batches/{batch}")
    first.stop(signal.SIGKILL)
    time.sleep(LEADER_HEARD_FOR)
    answers = []
    while ready(second)[0] != 200:
        answer = requests.get(f"{second.url}/batches/{batch}", allow_redirects=False, timeout=10)
        answers.append((answer.status_code, answer.headers.get("Retry-After")))
        time.sleep(0.2)
    assert answers[0] == (503, "1") and set(answers) <= {(503, "1"), (200, None)}, answers  # 200: it serves already
    served = requests.get(f"{second.url}/batches/{batch}", allow_redirects=False, timeout=10)
    assert served.status_code == 200 and served.json()["state"] == "success"


def test_kerberos_clients_answer_the_leaders_challenge_except_sparkmagics_mutual_check(
    realm, kerberos_server, zookeeper, zk_prefix, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kerberos sign-in on every server (HTTP/localhost, URLs by name). requests-gssapi sends nothing until
    challenged: the 307 is followed without credentials, the leader answers 401 Negotiate, and the client
    signs in there (so pylivy works). sparkmagic's requests-kerberos, mutual authentication REQUIRED, refuses
    the 307 itself, which carries no Negotiate answer; through a proxying standby it works."""
    import requests_gssapi

    monkeypatch.setenv("KRB5CCNAME", f"FILE:{realm.kinit('alice')}")
    servers = []
    for own in ({}, REDIRECT, {}):
        port = free_port()
        conf = {**ha_settings(zookeeper.hosts, zk_prefix, port), "livy.server.ha.advertised-url": f"http://localhost:{port}"}
        # pylivy sends no X-Requested-By: CSRF protection off, as for pylivy on Apache Livy
        servers.append(kerberos_server(port=port, **conf, **own, **{"livy.server.csrf-protection.enabled": "false"}))
        wait_leading(servers[0], 30)
    leader, redirecting, proxying = (dataclasses.replace(server, url=local_url(server)) for server in servers)
    client = requests.Session()
    client.auth = requests_gssapi.HTTPSPNEGOAuth()
    followed = client.get(f"{redirecting.url}/batches", timeout=10)
    assert followed.status_code == 200 and followed.url == f"{leader.url}/batches", followed.text
    assert followed.request.headers["Authorization"].startswith("Negotiate ")
    assert run_client("pylivy-kerberos", redirecting)["run"].strip() == "42"
    assert sparkmagic_sessions(proxying.url, "kerberos") == {"total": 0}
    refused = sparkmagic_sessions(redirecting.url, "kerberos")
    assert refused == {"error": "Error sending http request and maximum retry encountered.", "cause": "MutualAuthenticationError"}
