"""Hand-written bad input that fuzzers miss. Each gets a clear 4xx and leaves the server as it was.

The basic cases (unknown fields, bad types, /etc/passwd, a symlinked `file`, a 2 MB body) are in
test_server_api.py; these go further. The counts are printed for the hardening report.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import LivyServer

TRIED: list[str] = []


def server_state(server: LivyServer) -> tuple[int, list[dict[str, Any]], float]:
    """What must not change: the batches held, and how many were ever created."""
    listed = server.get("/batches", params={"size": 10000}).json()
    created = next(
        float(line.rsplit(" ", 1)[1])
        for line in server.get("/metrics").text.splitlines()
        if line.startswith("livy_batches_created_total ")
    )
    return listed["total"], [{k: s[k] for k in ("id", "name", "state")} for s in listed["sessions"]], created


def expect_rejected(response: requests.Response, status: int, words: str, label: str) -> None:
    TRIED.append(label)
    assert response.status_code == status, (label, response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"msg"}, label
    assert words.lower() in body["msg"].lower(), (label, body["msg"][:300])


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A directory next to the whitelisted one (tmp_path), with a file worth stealing."""
    secret_dir = tmp_path.parent / f"{tmp_path.name}-outside"
    secret_dir.mkdir()
    (secret_dir / "secret.py").write_text("print('secret')\n")
    yield secret_dir


def test_malformed_bodies_and_content_types(fake_server: LivyServer, job_file: str) -> None:
    before = server_state(fake_server)
    good = json.dumps({"file": job_file}).encode()
    malformed = {
        "truncated object": good[:-1],
        "truncated string": good[: good.index(b":") + 4],
        "only a brace": b"{",
        "trailing comma": b'{"file": "%s",}' % job_file.encode(),
        "single quotes": b"{'file': 'x'}",
        "NaN number": b'{"file": "%s", "driverCores": NaN}' % job_file.encode(),
        "huge exponent": b'{"file": "%s", "numExecutors": 1e999}' % job_file.encode(),
        "5000-digit integer": b'{"file": "%s", "numExecutors": 1%s}' % (job_file.encode(), b"0" * 5000),
        "200k-deep nesting": b"[" * 200_000 + b"]" * 200_000,
        "invalid UTF-8": b'{"file": "\xc3\x28"}',
        "lone surrogate": b'{"file": "\\ud800"}',
        "JSON null": b"null",
        "JSON string": b'"file"',
        "empty body": b"",
        "two documents": good + good,
    }
    for label, raw in malformed.items():
        response = fake_server.post("/batches", data=raw, headers={"Content-Type": "application/json"})
        expect_rejected(response, 400, "Rejected, Reason", label)
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/octet-stream",
    ):
        response = fake_server.post("/batches", data=good, headers={"Content-Type": content_type})
        expect_rejected(response, 400, "expected a JSON body", f"content type {content_type}")
    assert server_state(fake_server) == before


def test_body_over_the_size_limit_declared_or_chunked(make_server, job_file: str) -> None:
    server = make_server({"livy.server.request.max-body-bytes": "4096"})
    before = server_state(server)
    padded = {"file": job_file, "args": ["x" * 5000]}
    expect_rejected(server.post("/batches", json=padded), 413, "over the limit", "declared Content-Length over the limit")

    def chunks() -> Iterator[bytes]:
        yield b'{"file": "%s", "args": ["' % job_file.encode()
        for _ in range(100):
            yield b"y" * 100
        yield b'"]}'

    chunked = server.post("/batches", data=chunks(), headers={"Content-Type": "application/json"})
    expect_rejected(chunked, 413, "over the limit", "chunked body over the limit")
    lying = server.post(
        "/batches",
        data=json.dumps(padded).encode()[:4000],
        headers={"Content-Type": "application/json", "Content-Length": "99999999"},
    )
    assert lying.status_code in (400, 413), "a Content-Length that lies is refused either way"
    TRIED.append("lying Content-Length")
    assert server_state(server) == before
    assert server.post("/batches", json={"file": job_file, "args": ["x" * 3000]}).status_code == 201, "under the limit"


def test_paths_out_of_the_whitelist(fake_server: LivyServer, job_file: str, tmp_path: Path, outside: Path) -> None:
    before = server_state(fake_server)
    secret = outside / "secret.py"
    (tmp_path / "dir-link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "chain-1").symlink_to(tmp_path / "chain-2")
    (tmp_path / "chain-2").symlink_to(secret)
    (tmp_path / "subdir").mkdir()
    escapes = {
        "dot-dot": f"{tmp_path}/../{outside.name}/secret.py",
        "dot-dot from a subdir": f"{tmp_path}/subdir/../../{outside.name}/secret.py",
        "symlinked directory": f"{tmp_path}/dir-link/secret.py",
        "symlink chain": f"{tmp_path}/chain-1",
        "file: URL with dot-dot": f"file://{tmp_path}/../{outside.name}/secret.py",
        "file: URL, localhost": f"file://localhost{secret}",
        "prefix sibling": f"{tmp_path}-outside/secret.py",
        "absolute elsewhere": str(secret),
        "root": "/",
        "proc": "/proc/self/environ",
    }
    for label, path in escapes.items():
        for field, value in (("file", path), ("pyFiles", [path]), ("jars", [path]), ("files", [path]), ("archives", [path])):
            body = {"file": job_file, field: value} if field != "file" else {"file": value}
            response = fake_server.post("/batches", json=body)
            expect_rejected(response, 400, "Rejected, Reason", f"{field}: {label}")
            assert "not in an allowed directory" in response.json()["msg"] or "does not exist" in response.json()["msg"]
    odd = {
        "symlink loop": {"file": f"{tmp_path}/loop"},
        "name too long": {"file": f"{tmp_path}/{'a' * 5000}.py"},
        "NUL in a path": {"file": job_file, "pyFiles": [f"{tmp_path}/a\x00.py"]},
        "percent-encoded dot-dot": {"file": f"file://{tmp_path}/%2e%2e/{outside.name}/secret.py"},
        "comma smuggling a local path": {"file": job_file, "pyFiles": [f"hdfs:///lib.zip,{secret}"]},
        "comma in jars": {"file": job_file, "jars": [f"{job_file},{secret}"]},
        "conf spark.jars": {"file": job_file, "conf": {"spark.jars": str(secret)}},
        "conf spark.submit.pyFiles": {"file": job_file, "conf": {"spark.submit.pyFiles": f"s3a://b/x.zip,{secret}"}},
        "conf spark.yarn.dist.files": {"file": job_file, "conf": {"spark.yarn.dist.files": str(secret)}},
        "conf spark.master": {"file": job_file, "conf": {"spark.master": "local[64]"}},
        "unsupported scheme": {"file": "ftp://example.com/job.py"},
        "relative path": {"file": "job.py"},
        "home-relative path": {"file": "~/job.py"},
        "a directory": {"file": str(tmp_path)},
    }
    for label, body in odd.items():
        expect_rejected(fake_server.post("/batches", json=body), 400, "Rejected, Reason", label)
    assert server_state(fake_server) == before


def test_symlink_inside_the_whitelist_is_followed_to_its_target(fake_server: LivyServer, job_file: str, tmp_path: Path) -> None:
    (tmp_path / "alias.py").symlink_to(job_file)
    batch = fake_server.submit(file=str(tmp_path / "alias.py"))
    fake_server.wait_for(batch["id"])
    log = fake_server.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": -1}).json()["log"]
    assert f"INFO SparkContext: Submitted application: {job_file}" in log, "spark-submit gets the checked, resolved path"


@pytest.fixture
def argv_spark_home(tmp_path: Path) -> Path:
    """A spark-submit that writes its exact argv (NUL-separated) next to itself, then succeeds."""
    home = tmp_path / "argv-spark"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "spark-submit"
    script.write_text(
        '#!/bin/sh\nprintf "%s\\0" "$@" > "$(dirname "$0")/argv.$$"\necho "INFO SparkContext: Running Spark version 4.3.0"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return home


def test_metacharacters_reach_spark_submit_as_plain_arguments(make_server, job_file: str, argv_spark_home: Path) -> None:
    server = make_server({"livy.server.spark-home": str(argv_spark_home)})
    marker = Path(job_file).parent / "pwned"
    nasty = [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"; touch {marker}",
        f"| touch {marker}",
        f"&& touch {marker}",
        "line1\nline2",
        "tab\there",
        "'single' \"double\"",
        "--master yarn",
        "${HOME}",
        "*",
        "-",
        "",
    ]
    name = "etl $(reboot); `id` | & > < * ' \" \\ ${IFS}"
    conf = {"spark.app.x": f"a\nb; $(touch {marker})", "spark.y": "--deploy-mode cluster", "spark.z": "= =="}
    batch = server.submit(file=job_file, args=nasty, name=name, conf=conf, queue="q; rm -rf /", className="a.B$(id)")
    assert server.wait_for(batch["id"])["state"] == "success"
    argv_files = list((argv_spark_home / "bin").glob("argv.*"))
    assert len(argv_files) == 1
    argv = argv_files[0].read_bytes().decode().split("\0")[:-1]
    assert argv[-len(nasty) :] == nasty, "app arguments arrive one for one, unchanged"
    assert argv[argv.index("--name") + 1] == name
    assert argv[argv.index("--queue") + 1] == "q; rm -rf /"
    assert argv[argv.index("--class") + 1] == "a.B$(id)"
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    for key, value in conf.items():
        assert f"{key}={value}" in confs
    assert argv[-len(nasty) - 1] == job_file
    assert not marker.exists(), "no shell ever ran"
    TRIED.extend(f"metacharacters: {a!r}" for a in [*nasty, name, *conf.values()])


def test_newlines_and_control_characters_in_name_are_rejected(fake_server: LivyServer, job_file: str) -> None:
    before = server_state(fake_server)
    for name in ("two\nlines", "cr\rhere", "slash/name", "", "   ", "0042", "x" * 256):
        response = fake_server.post("/batches", json={"file": job_file, "name": name})
        expect_rejected(response, 400, "Rejected, Reason", f"name {name[:20]!r}")
    assert server_state(fake_server) == before


def test_paging_and_ids_out_of_range(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, args=["lines=5"])
    fake_server.wait_for(batch["id"])
    before = server_state(fake_server)
    log_path = f"/batches/{batch['id']}/log"
    bad_params = [
        ("/batches", {"size": 10**12}),
        ("/batches", {"size": -1}),
        ("/batches", {"from": -5}),
        ("/batches", {"from": 2**63}),
        ("/batches", {"from": "9" * 5000}),
        ("/batches", {"size": ""}),
        ("/batches", {"size": "0x10"}),
        ("/batches", {"size": "1.5"}),
        ("/batches", {"size": "NaN"}),
        (log_path, {"size": 10**12}),
        (log_path, {"from": 2**40}),
        (log_path, {"from": "abc"}),
    ]
    for path, params in bad_params:
        expect_rejected(fake_server.get(path, params=params), 400, "query parameter", f"GET {path} {params}"[:80])
    beyond = fake_server.get("/batches", params={"from": 2**31}).json()
    assert (beyond["sessions"], beyond["total"]) == ([], 1)
    past_end = fake_server.get(log_path, params={"from": 10**6, "size": 10}).json()
    assert past_end["log"] == []
    everything = fake_server.get(log_path, params={"size": -1}).json()
    assert everything["from"] == 0
    assert len(everything["log"]) == everything["total"]
    last = fake_server.get(log_path, params={"from": -1, "size": 2}).json()  # Livy's reading: the last `size` lines
    assert (last["from"], last["log"]) == (everything["total"] - 2, everything["log"][-2:])
    TRIED.extend(["list from 2**31", "log from past the end", "log size -1"])
    missing_ids = ["1", "999999", str(2**63), str(2**64 + 1), "9" * 5000, "-1", "0x0", "1e3", "²", "٣", "%00", "%2e%2e", "..%2f0"]
    for key in missing_ids:
        for method, path in (("GET", f"/batches/{key}"), ("GET", f"/batches/{key}/state"), ("GET", f"/batches/{key}/log")):
            response = fake_server.session.request(method, fake_server.url + path, timeout=10)
            expect_rejected(response, 404, "not found", f"{method} {path[:40]}")
        response = fake_server.delete(f"/batches/{key}")
        expect_rejected(response, 404, "not found", f"DELETE /batches/{key[:40]}")
    assert server_state(fake_server) == before


def test_unknown_routes_and_methods_answer_json(fake_server: LivyServer) -> None:
    for method, path, status in (
        ("GET", "/nope", 404),
        ("PUT", "/batches", 405),
        ("PATCH", "/batches/0", 405),
        ("POST", "/batches/0/state", 405),
        ("GET", "/sessions/0/nope", 404),
        ("GET", "/batches/0/state/extra", 404),
    ):
        response = fake_server.session.request(method, fake_server.url + path, timeout=10)
        assert response.status_code == status, (method, path)
        assert "msg" in response.json()
        TRIED.append(f"{method} {path}")


def test_report_counts() -> None:
    """Prints what this module tried (run with -s); fails if the module tried nothing."""
    if not TRIED:
        pytest.skip("the other cases were deselected")
    print(f"\nbad input: {len(TRIED)} inputs tried, each answered 4xx (or passed verbatim where meant to)")
    assert len(TRIED) > 100


def test_local_uris_face_the_whitelist_unless_the_driver_runs_in_a_cluster(
    make_server, job_file: str, tmp_path: Path, outside: Path
) -> None:
    """`local:` names a file on the driver's node: our host in local/client mode, a cluster node in cluster mode."""
    secret = outside / "secret.py"
    server = make_server()
    fields = {
        "file": lambda p: {"file": p},
        "jars": lambda p: {"file": job_file, "jars": [p]},
        "pyFiles": lambda p: {"file": job_file, "pyFiles": [p]},
        "files": lambda p: {"file": job_file, "files": [p]},
        "archives": lambda p: {"file": job_file, "archives": [p]},
        "conf spark.jars": lambda p: {"file": job_file, "conf": {"spark.jars": p}},
        "conf spark.yarn.dist.files": lambda p: {"file": job_file, "conf": {"spark.yarn.dist.files": f"hdfs:///a,{p}"}},
    }
    for uri in ("local:///etc/passwd", f"local:{secret}", f"local://{tmp_path}/../{outside.name}/secret.py"):
        for label, body in fields.items():
            response = server.post("/batches", json=body(uri))
            expect_rejected(response, 400, "not in an allowed directory", f"{label}: {uri}")
    accepted = server.submit(file=f"local:{job_file}", jars=[f"local://{job_file}"])
    command = "\n".join(server.wait_for(accepted["id"])["log"])
    assert f"local:{job_file}" in command, command
    cluster = make_server({"livy.spark.master": "spark://127.0.0.1:1", "livy.spark.deploy-mode": "cluster"})
    for label, body in fields.items():
        response = cluster.post("/batches", json=body(f"local:{secret}"))
        assert response.status_code == 201, (label, response.text)
