"""A real Spark standalone cluster on loopback (master with its REST server, one worker), from the pyspark package,
and a tiny Java app compiled with javac against pyspark's jars (standalone cluster mode runs JVM apps only).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from tests.spark_jvm import FAST_START

SLEEPER_JAVA = """
import java.nio.file.Files;
import java.nio.file.Paths;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaSparkContext;

public class Sleeper {
  // args: RELEASE_FILE [fail]. Registers an app (so the master gives it an app id), waits until the
  // test creates RELEASE_FILE (the worker runs on this host), then ends, or throws with "fail".
  public static void main(String[] args) throws Exception {
    JavaSparkContext sc = new JavaSparkContext(new SparkConf());
    System.out.println("sleeper started as " + sc.sc().applicationId());
    for (int i = 0; i < 6000 && !Files.exists(Paths.get(args[0])); i++) Thread.sleep(100);
    sc.stop();
    if (args.length > 1) throw new IllegalStateException("failing on purpose");
    System.out.println("sleeper done");
  }
}
"""


@dataclass
class StandaloneCluster:
    master_url: str  # spark://127.0.0.1:PORT
    ui_url: str  # the master's web UI (its /json/ status)
    rest_url: str  # the master's REST submission server
    work_dir: Path
    procs: tuple[subprocess.Popen[bytes], ...] = ()

    def settings(self) -> dict[str, str]:
        """Server settings for cluster deploy mode on this cluster (ports are not Spark's defaults)."""
        return {
            "livy.spark.master": self.master_url,
            "livy.spark.deploy-mode": "cluster",
            "livy.server.standalone.master-ui-url": self.ui_url,
            "livy.server.standalone.rest-url": self.rest_url,
            "livy.server.cluster.poll-interval": "500ms",
        }

    def status(self) -> dict[str, Any]:
        return requests.get(f"{self.ui_url}/json/", timeout=10).json()

    def driver(self, driver_id: str) -> dict[str, Any] | None:
        """The driver's entry and which list it is in ('active' or 'completed')."""
        status = self.status()
        for section in ("activedrivers", "completeddrivers"):
            for entry in status[section]:
                if entry["id"] == driver_id:
                    return {**entry, "section": section}
        return None

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # Drivers run under the worker (DriverWrapper); none may outlive the test.
        for proc in psutil.process_iter(["cmdline"]):
            if any(str(self.work_dir) in arg for arg in proc.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def compile_sleeper(work_dir: Path) -> Path:
    """sleeper.jar with the Sleeper class, compiled against the pyspark package's jars."""
    spark_home = resolve_spark_home(ServerConfig())
    src = work_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "Sleeper.java").write_text(SLEEPER_JAVA)
    javac = subprocess.run(
        ["javac", "-cp", f"{spark_home}/jars/*", "-d", str(src), str(src / "Sleeper.java")], capture_output=True, text=True
    )
    assert javac.returncode == 0, javac.stderr
    jar = work_dir / "sleeper.jar"
    subprocess.run(["jar", "cf", str(jar), "-C", str(src), "Sleeper.class"], check=True)
    return jar


def start_cluster(work_dir: Path, timeout: float = 300) -> StandaloneCluster:
    from tests.conftest import free_port  # here, not at the top: conftest imports this module's users

    spark_home = resolve_spark_home(ServerConfig())
    port, ui_port, rest_port, worker_ui = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(work_dir),
        "SPARK_MASTER_OPTS": f"-Dspark.master.rest.enabled=true -Dspark.master.rest.port={rest_port}",
        "SPARK_DAEMON_JAVA_OPTS": FAST_START,  # the master's and worker's JVMs start as the tests' drivers do
    }
    spark_class = str(spark_home / "bin" / "spark-class")
    url = f"spark://127.0.0.1:{port}"
    master_args = ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
    worker_args = ["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1", "--webui-port", str(worker_ui)]
    # Cores and memory are bookkeeping for the master: enough for a few drivers of 512m at once.
    worker_args += ["--cores", "4", "--memory", "3g", "--work-dir", str(work_dir / "worker")]
    procs = []
    for name, args in (("master", [*master_args, "--webui-port", str(ui_port)]), ("worker", worker_args)):
        with open(work_dir / f"{name}.log", "wb") as out:
            procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=out, stderr=subprocess.STDOUT))
    cluster = StandaloneCluster(url, f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{rest_port}", work_dir, tuple(procs))
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cluster.status().get("aliveworkers", 0) >= 1:
                return cluster
        except (requests.RequestException, ValueError):
            pass
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"the standalone cluster did not come up:\n{(work_dir / 'master.log').read_text()[-3000:]}")
        time.sleep(0.5)
