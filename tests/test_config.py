"""livy.conf parsing, the spark-submit command and the local-file whitelist."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from airflow_provider_livy.protocol import BatchRequestError, validate_batch_request
from airflow_provider_livy.server import cli
from airflow_provider_livy.server.config import ConfigError, ServerConfig, build_config, load_config, parse_duration
from airflow_provider_livy.server.drivers.launcher import build_command, check_request_files


@pytest.mark.parametrize(("text", "seconds"), [("600s", 600), ("10m", 600), ("1h", 3600), ("1.5d", 129600), ("250ms", 0.25)])
def test_durations_take_units(text: str, seconds: float) -> None:
    assert parse_duration("k", text) == seconds


@pytest.mark.parametrize("text", ["600", "", "ten minutes", "5 weeks", "-1s"])
def test_duration_without_unit_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ConfigError, match="needs a unit"):
        parse_duration("livy.server.session.state-retain.sec", text)


def test_conf_file_with_comments_and_overrides(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = tmp_path / "livy.conf"
    conf.write_text(
        "# a comment\n"
        "livy.server.port = 9000\n"
        "livy.spark.master=spark://127.0.0.1:7077\n"
        "livy.server.session.state-retain.sec 2m\n"
        "livy.server.sesion.timeout = 1h\n"
        "\n"
    )
    with caplog.at_level(logging.WARNING):
        config = load_config(str(conf), ["livy.server.port=9100", "livy.file.local-dir-whitelist=/a, /b"])
    assert config.port == 9100
    assert config.spark_master == "spark://127.0.0.1:7077"
    assert config.state_retain == 120
    assert config.local_dir_whitelist == ("/a", "/b")
    assert "livy.server.sesion.timeout" in caplog.text


def test_defaults_are_safe() -> None:
    config = ServerConfig()
    assert config.host == "127.0.0.1"
    assert config.port == 8998
    assert config.state_retain == 600
    assert config.max_sessions == 10_000
    assert config.batch_ttl == 0
    assert config.local_dir_whitelist == ()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("livy.server.port", "eighty")], "whole number"),
        ([("livy.server.csrf-protection.enabled", "maybe")], "true or false"),
        ([("livy.server.recovery.mode", "recovery")], "state-store.url"),
        ([("livy.server.recovery.state-store", "hdfs")], "filesystem, zookeeper"),
        ([("livy.server.auth.type", "basic")], "users-file"),
        ([("livy.server.ha.standby", "307")], r"livy\.server\.ha\.standby = '307': expected one of proxy, redirect"),
    ],
)
def test_bad_values_are_refused(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(pairs)


def test_cli_exits_2_on_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--set", "livy.server.session.state-retain.sec=600"]) == 2
    assert "needs a unit" in capsys.readouterr().err


def test_command_maps_fields_like_livy(tmp_path: Path) -> None:
    request = validate_batch_request(
        {
            "file": "hdfs:///app.jar",
            "className": "org.example.Main",
            "args": ["--day", "2026-11-23"],
            "jars": ["hdfs:///a.jar", "hdfs:///b.jar"],
            "pyFiles": ["s3a://bucket/lib.zip"],
            "files": ["hdfs:///f.txt"],
            "archives": ["hdfs:///env.tgz#env"],
            "driverMemory": "512m",
            "driverCores": 2,
            "executorMemory": "2g",
            "executorCores": 3,
            "numExecutors": 4,
            "queue": "etl",
            "name": "daily",
            "proxyUser": "bob",
            "conf": {"spark.sql.shuffle.partitions": "8"},
        }
    )
    config = ServerConfig(spark_master="yarn", deploy_mode="cluster")
    command = build_command(Path("/opt/spark"), request, config)
    assert command[0] == "/opt/spark/bin/spark-submit"
    pairs = dict(zip(command[1::2], command[2::2], strict=False))
    assert pairs["--name"] == "daily"
    assert pairs["--class"] == "org.example.Main"
    assert pairs["--queue"] == "etl"
    assert pairs["--proxy-user"] == "bob"
    confs = {c.split("=", 1)[0]: c.split("=", 1)[1] for i, c in enumerate(command) if command[i - 1] == "--conf"}
    assert confs == {
        "spark.sql.shuffle.partitions": "8",
        "spark.driver.memory": "512m",
        "spark.driver.cores": "2",
        "spark.executor.memory": "2g",
        "spark.executor.cores": "3",
        "spark.executor.instances": "4",
        "spark.jars": "hdfs:///a.jar,hdfs:///b.jar",
        "spark.files": "hdfs:///f.txt",
        "spark.archives": "hdfs:///env.tgz#env",
        "spark.submit.pyFiles": "s3a://bucket/lib.zip",
        "spark.master": "yarn",
        "spark.submit.deployMode": "cluster",
    }
    assert command[-3:] == ["hdfs:///app.jar", "--day", "2026-11-23"]


def test_whitelist_resolves_symlinks_and_dotdot(tmp_path: Path) -> None:
    allowed = tmp_path / "jobs"
    allowed.mkdir()
    (allowed / "ok.py").write_text("x")
    secret = tmp_path / "secret.py"
    secret.write_text("x")
    (allowed / "sneaky.py").symlink_to(secret)
    whitelist = (str(allowed),)
    assert check_request_files({"file": str(allowed / "ok.py")}, whitelist)["file"] == str(allowed / "ok.py")
    assert check_request_files({"file": f"file://{allowed / 'ok.py'}"}, whitelist)["file"] == str(allowed / "ok.py")
    for path in (allowed / ".." / "secret.py", allowed / "sneaky.py", Path("/etc/passwd")):
        with pytest.raises(BatchRequestError, match="not in an allowed directory"):
            check_request_files({"file": str(path)}, whitelist)
    with pytest.raises(BatchRequestError, match="not in an allowed directory"):
        check_request_files({"file": str(allowed / "ok.py"), "pyFiles": [str(secret)]}, whitelist)
    with pytest.raises(BatchRequestError, match="set by the server"):
        check_request_files({"file": str(allowed / "ok.py"), "conf": {"spark.submit.deployMode": "client"}}, whitelist)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"file": "x", "driverMemory": "1 GB"}, "size such as"),
        ({"file": "x", "driverCores": True}, "integer"),
        ({"file": "x", "name": "a/b"}, "control characters"),
        ({"file": "x", "name": "  "}, "blank"),
        ({"file": ""}, "required"),
    ],
)
def test_protocol_validation_messages(body: dict[str, object], message: str) -> None:
    with pytest.raises(BatchRequestError, match=message):
        validate_batch_request(body)
