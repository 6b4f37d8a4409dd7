"""Faster Spark JVMs for the tests: C1 only, the serial GC and a class-data archive of Spark's classes.

A local Spark driver spends most of its start compiling with C2 and loading some ten thousand classes,
which on two cores makes every real-Spark test wait. The tests hand spark-submit (through the servers
they start, which pass their environment on) `SPARK_SUBMIT_OPTS` with these flags; the archive is made
once by `scripts/setup.sh --tests` (`python -m tests.spark_jvm`, about a minute). It is the same Spark:
only the driver JVM's compiler and class loading change. A JVM whose classpath differs from the
archive's (another SPARK_CONF_DIR) silently starts without it. The server itself never sets them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyspark

ARCHIVE = Path(sys.prefix) / f"spark-{pyspark.__version__}-classes.jsa"  # in .venv: goes with the Spark it serves
FAST_START = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
WARM_UP = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").getOrCreate()
df = spark.createDataFrame([(1, "a"), (2, "b")], ["n", "letter"])
df.createOrReplaceTempView("t")
print(spark.sql("select count(*) from t join range(10) on n = id").collect(), spark.range(100).groupBy().sum().collect())
spark.stop()
"""


def java_options() -> str:
    """The driver JVM options the tests run Spark with: the archive's when it has been made."""
    if ARCHIVE.is_file():
        return f"{FAST_START} -XX:SharedArchiveFile={ARCHIVE}"
    return FAST_START


def make_archive() -> None:
    """Run one small job whose JVM dumps the classes it loaded at exit (Java 13+ dynamic archive)."""
    spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    partial = ARCHIVE.with_suffix(".partial")
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "warm_up.py"
        script.write_text(WARM_UP)
        env = {
            **os.environ,
            "SPARK_SUBMIT_OPTS": f"{FAST_START} -XX:ArchiveClassesAtExit={partial}",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
        env.pop("SPARK_CONF_DIR", None)
        done = subprocess.run([str(spark_submit), str(script)], env=env, capture_output=True, text=True, timeout=900, cwd=work)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise SystemExit(f"could not make Spark's class-data archive:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    partial.replace(ARCHIVE)


if __name__ == "__main__":
    if ARCHIVE.is_file():
        print(f"[setup] Spark class-data archive for the tests: {ARCHIVE} (made before)")
    else:
        print("[setup] making Spark's class-data archive for the tests (about a minute)", flush=True)
        make_archive()
        print(f"[setup] made {ARCHIVE} ({ARCHIVE.stat().st_size / 2**20:.0f} MB)")
