"""Turning a batch request into a spark-submit process, and watching that process.

No shell is ever involved: the command is an argument list, so whatever a user puts in args,
conf or name reaches spark-submit as plain arguments.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psutil

from airflow_provider_livy.example_jobs import EXAMPLE_JOBS_DIR
from airflow_provider_livy.protocol import BatchRequestError
from airflow_provider_livy.server.config import ConfigError, ServerConfig
from airflow_provider_livy.server.drivers import supervisor

# Request fields that Livy turns into --conf settings.
CONF_FIELDS = {
    "driverMemory": "spark.driver.memory",
    "driverCores": "spark.driver.cores",
    "executorMemory": "spark.executor.memory",
    "executorCores": "spark.executor.cores",
    "numExecutors": "spark.executor.instances",
}
LIST_CONF_FIELDS = {
    "jars": "spark.jars",
    "files": "spark.files",
    "archives": "spark.archives",
    "pyFiles": "spark.submit.pyFiles",
}
# Settings that name files for Spark to ship: set through `conf` they face the same whitelist.
FILE_CONF_KEYS = (
    *LIST_CONF_FIELDS.values(),
    "spark.yarn.dist.jars",
    "spark.yarn.dist.files",
    "spark.yarn.dist.archives",
    "spark.yarn.dist.pyFiles",
)
# What the server decides and users may not override through `conf`.
RESERVED_CONF = ("spark.master", "spark.submit.deployMode")
# Whose Kerberos identity a driver launches with: the server's (livy.server.launch.kerberos.*), never the user's.
KERBEROS_CONF = ("spark.kerberos.principal", "spark.kerberos.keytab", "spark.yarn.principal", "spark.yarn.keytab")
REMOTE_SCHEMES = ("hdfs", "s3", "s3a", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "http", "https", "viewfs")
# `local:/path` names a file on the driver's node: our own host in local and client mode (so it faces
# the whitelist like a plain path), a cluster node in cluster mode (so it passes as a remote URI does).
NODE_LOCAL_SCHEME = "local"

# Driver output that tells us what we need; the driver prints them in this form for every master.
APP_ID_RE = re.compile(r"\b(application_\d+_\d+|app-\d{14}-\d{4}|local-\d{10,})\b")
UI_URL_RE = re.compile(r"(?:Bound SparkUI to \S+, and started at|Spark web UI (?:available )?at) (https?://\S+)")
UI_PORT_RE = re.compile(r"Successfully started service '?SparkUI'? on port (\d+)")
NOT_STARTED = supervisor.NOT_STARTED  # the exit code of a held supervisor that started nothing
# How long a held supervisor waits for the server's word. The launch mark is one ZooKeeper write, but a
# leader whose connection is suspended holds its writes until it knows whether it still leads.
HOLD_LIMIT = 120.0
DRIVER_STARTED_RE = re.compile(r"Running Spark version|SparkContext: Submitted application|Submitting application")


def resolve_spark_home(config: ServerConfig) -> Path:
    """livy.server.spark-home, else SPARK_HOME, else the Spark that ships inside pyspark."""
    if config.spark_home:
        return Path(config.spark_home)
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    try:
        import pyspark
    except ImportError:  # an install without the spark extra: say what to do instead of a traceback
        raise ConfigError(
            "no Spark found: set livy.server.spark-home or SPARK_HOME, or install the spark extra "
            "(pip install 'airflow-provider-livy[spark]')"
        ) from None
    return Path(pyspark.__file__).parent


def _scheme(path: str) -> str:
    return urllib.parse.urlsplit(path).scheme.lower()


def check_local_file(path: str, whitelist: tuple[str, ...], field: str, cluster: bool = False) -> str:
    """A local path is allowed only if, with symlinks and '..' resolved, it lies in a whitelisted dir.

    In cluster mode a `local:` URI is a path on a cluster node, so it is passed on as remote URIs are.
    """
    scheme = _scheme(path)
    if scheme in REMOTE_SCHEMES or (scheme == NODE_LOCAL_SCHEME and cluster):
        return path
    if scheme and scheme not in ("file", NODE_LOCAL_SCHEME):
        raise BatchRequestError(f"{field}: scheme '{scheme}' of {path!r} is not supported")
    local = urllib.parse.urlsplit(path).path if scheme else path
    if not os.path.isabs(local):
        raise BatchRequestError(f"{field}: local path {path!r} must be absolute")
    try:
        resolved = Path(local).resolve()
        allowed = [Path(d).resolve() for d in whitelist]
        if not any(resolved == d or d in resolved.parents for d in allowed):
            where = ", ".join(str(d) for d in allowed) or "nowhere (livy.file.local-dir-whitelist is empty)"
            raise BatchRequestError(f"{field}: local path {path!r} is not in an allowed directory; allowed: {where}")
        if not resolved.is_file():
            raise BatchRequestError(f"{field}: file {path!r} does not exist")
    except (OSError, RuntimeError) as err:  # a name too long, a symlink loop
        raise BatchRequestError(f"{field}: cannot use local path {path[:200]!r}: {err}") from None
    # `local:` keeps its meaning for Spark (use the file in place, do not ship it), now with the checked path.
    return f"local:{resolved}" if scheme == NODE_LOCAL_SCHEME else str(resolved)


def check_request_files(request: dict[str, Any], whitelist: tuple[str, ...], cluster: bool = False) -> dict[str, Any]:
    """Return the request with every local path checked and resolved.

    The package's own example jobs are always allowed, so the demo works with no configuration.
    `cluster`: the driver runs on a cluster node (deploy mode cluster), where `local:` paths point.
    """
    whitelist = (*whitelist, str(EXAMPLE_JOBS_DIR))
    checked = dict(request)
    if "file" in request:  # an interactive session has none: its file is our REPL
        checked["file"] = check_local_file(request["file"], whitelist, "file", cluster)
    for field in LIST_CONF_FIELDS:
        if field in request:
            checked[field] = [_check_list_entry(p, whitelist, field, cluster) for p in request[field]]
    conf = dict(request.get("conf", {}))
    for key, value in conf.items():
        if key in RESERVED_CONF:
            raise BatchRequestError(f"conf: '{key}' is set by the server (livy.spark.master / deploy-mode)")
        if key in KERBEROS_CONF:
            raise BatchRequestError(f"conf: '{key}' is set by the server (livy.server.launch.kerberos.*)")
        if key in FILE_CONF_KEYS:
            conf[key] = ",".join(
                check_local_file(p.strip(), whitelist, f"conf {key}", cluster) for p in value.split(",") if p.strip()
            )
    if "conf" in request:
        checked["conf"] = conf
    return checked


def _check_list_entry(path: str, whitelist: tuple[str, ...], field: str, cluster: bool) -> str:
    """Spark reads these lists comma-separated: a comma would smuggle a second, unchecked path in."""
    if "," in path:
        raise BatchRequestError(f"{field}: {path!r} has a comma; give each path as its own list item")
    return check_local_file(path, whitelist, field, cluster)


def build_command(
    spark_home: Path,
    request: dict[str, Any],
    config: ServerConfig,
    server_conf: dict[str, str] | None = None,
    properties_file: Path | None = None,
) -> list[str]:
    """The spark-submit argument list Livy would build for this request; `server_conf` wins over the user's."""
    cmd = [str(spark_home / "bin" / "spark-submit")]
    if properties_file is not None:
        cmd += ["--properties-file", str(properties_file)]
    if request.get("name"):
        cmd += ["--name", request["name"]]
    if request.get("className"):
        cmd += ["--class", request["className"]]
    if request.get("queue"):
        cmd += ["--queue", request["queue"]]
    if request.get("proxyUser"):
        cmd += ["--proxy-user", request["proxyUser"]]
    cmd += kerberos_arguments(config, request.get("proxyUser"))
    conf: dict[str, str] = dict(request.get("conf", {}))
    for field, key in CONF_FIELDS.items():
        if field in request:
            conf[key] = str(request[field])
    for field, key in LIST_CONF_FIELDS.items():
        if request.get(field):
            conf[key] = ",".join(request[field])
    conf.update(server_conf or {})
    conf["spark.master"] = config.spark_master
    if config.deploy_mode:
        conf["spark.submit.deployMode"] = config.deploy_mode
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append(request["file"])
    cmd += request.get("args", [])
    return cmd


def kerberos_arguments(config: ServerConfig, proxy_user: str | None) -> list[str]:
    """`--principal/--keytab` of livy.server.launch.kerberos.*, so drivers on YARN get and renew their tokens.
    Not with --proxy-user: spark-submit takes one or the other; an impersonated launch runs on the
    ticket cache `launch_ticket_cache` fills from the same keytab, as Livy's own kinit does."""
    if not config.launch_principal or proxy_user:
        return []
    return ["--principal", launch_principal(config), "--keytab", config.launch_keytab]


def launch_principal(config: ServerConfig) -> str:
    from airflow_provider_livy.server.auth.principals import server_principal

    return server_principal(config.launch_principal, config.host)


def kerberos_environment(config: ServerConfig, proxy_user: str | None, directory: Path) -> dict[str, str]:
    """KRB5CCNAME for an impersonated launch on a server with a launch keytab (see kerberos_arguments)."""
    if not config.launch_principal or not proxy_user:
        return {}
    return {"KRB5CCNAME": launch_ticket_cache(config, directory / "launch.ccache")}


def launch_ticket_cache(config: ServerConfig, ccache: Path, max_age: float = 3600.0) -> str:
    """A ticket cache (0600, as kinit makes it) holding the launch principal's TGT, renewed by `kinit -kt` once
    it is `max_age` old. Raises OSError when kinit fails, with the keytab's path left out."""
    try:
        fresh = time.time() - ccache.stat().st_mtime < max_age
    except FileNotFoundError:
        fresh = False
    if not fresh:
        done = subprocess.run(
            ["kinit", "-k", "-t", config.launch_keytab, "-c", f"FILE:{ccache}", launch_principal(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().replace(config.launch_keytab, "<launch keytab>")
            raise OSError(f"kinit for {launch_principal(config)} failed: {message}")
    return f"FILE:{ccache}"


def spark_submit_problem(spark_home: Path) -> str | None:
    """A reason spark-submit cannot run, for a warning at start-up; None when it looks fine."""
    path = spark_home / "bin" / "spark-submit"
    if not path.is_file():
        return f"spark-submit not found at {path} (set livy.server.spark-home or SPARK_HOME)"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    return None


def spark_environment(request: dict[str, Any], cluster: bool = False) -> dict[str, str]:
    """The driver's environment: ours, plus a Python for PySpark that has pyspark importable.

    Not in cluster mode: YARN's client passes PYSPARK_PYTHON and PYSPARK_DRIVER_PYTHON on to the
    driver, where this server's Python does not exist; the cluster's own settings must decide there.
    """
    env = dict(os.environ)
    if not cluster:
        env.setdefault("PYSPARK_PYTHON", sys.executable)
        env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if request.get("proxyUser"):
        env["HADOOP_PROXY_USER"] = request["proxyUser"]
    return env


def spark_defaults_path(spark_home: Path, env: dict[str, str]) -> Path:
    """Where spark-submit reads its defaults: $SPARK_CONF_DIR, else the Spark home's conf/ (as Spark's Utils does)."""
    conf_dir = env.get("SPARK_CONF_DIR") or str(spark_home / "conf")
    return Path(conf_dir) / "spark-defaults.conf"


def write_properties_file(path: Path, spark_home: Path, env: dict[str, str], properties: dict[str, str]) -> None:
    """A --properties-file readable by its owner only: for settings no command line may show (`ps` shows
    them to every local user), such as a session's secret for its driver in a cluster.

    spark-submit reads spark-defaults.conf only when no properties file is given (Spark 3.5; Spark 4's
    --load-spark-defaults is not in 3.5), so its settings are merged in first and keep applying.
    Request `--conf` settings still win over both, as on any spark-submit command line.
    """
    import javaproperties  # only cluster-mode sessions write one

    merged: dict[str, str] = {}
    defaults = spark_defaults_path(spark_home, env)
    with contextlib.suppress(FileNotFoundError), open(defaults, encoding="utf-8") as handle:
        merged.update(javaproperties.load(handle))
    merged.update(properties)
    path.unlink(missing_ok=True)  # a leftover from before a crash: O_EXCL below must create the file with our mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        javaproperties.dump(merged, handle, timestamp=False)


def start(command: list[str], log_path: Path, exit_path: Path, env: dict[str, str], held: int | None = None) -> int:
    """Start the supervisor in a new session; its pid is also the process group id. posix_spawn rather
    than Popen: the server keeps only the pid of each driver (a Popen object per session cost memory,
    and its own reaping would race ours); reap() collects the child once it ends. `held`: the read end
    of a pipe; the supervisor then starts nothing until the server writes to the pipe (supervisor.py)."""
    hold = ["--hold", f"{HOLD_LIMIT:g}"] if held is not None else []
    args = [sys.executable, "-S", "-E", supervisor.__file__, *hold, str(exit_path), "--", *command]
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    if held is not None:
        file_actions.append((os.POSIX_SPAWN_DUP2, held, supervisor.HOLD_FD))
    return os.posix_spawn(sys.executable, args, env, file_actions=file_actions, setsid=True)


def is_held(cmdline: list[str]) -> bool:
    """Whether a supervisor's command line (psutil's) is that of one started held."""
    return "--hold" in cmdline[: cmdline.index("--")] if "--" in cmdline else False


def reap(pid: int) -> bool:
    """Whether our child `pid` has ended; an ended one is reaped (no zombie keeps its group alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


def process_start_time(pid: int) -> float | None:
    """Together with the pid this identifies a process: a reused pid has another start time."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int, start_time: float | None) -> bool:
    """True if the process that we started as `pid` still runs (not a reused pid, not a zombie)."""
    try:
        proc = psutil.Process(pid)
        if start_time is not None and abs(proc.create_time() - start_time) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_alive(pgid: int) -> bool:
    """Whether any live process remains in the group; zombies waiting for init to reap them don't count.

    The group is checked first, by pid, then its leader (our supervisor, pid = pgid: while the group exists no
    other process can take that pid), and only when the leader is gone are the host's processes listed, and
    only the group's members asked their status: psutil.process_iter would read every process on the host
    at each call (every 50 ms of a kill, for each of the sessions a stopping server kills at once), and keep
    them all listed for good afterwards (2.3 MB with 2,600 processes)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pgid).status() != psutil.STATUS_ZOMBIE:
            return True
    for pid in psutil.pids():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def find_app_id(log_path: Path) -> str | None:
    """The first application id a driver printed, read back from its log file."""
    try:
        with open(log_path, errors="replace") as handle:
            for line in handle:
                if match := APP_ID_RE.search(line):
                    return match.group(1)
    except FileNotFoundError:
        pass
    return None


def read_exit_code(exit_path: Path) -> int | None:
    try:
        return int(exit_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
