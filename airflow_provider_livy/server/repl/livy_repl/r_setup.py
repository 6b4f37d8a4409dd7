"""Where R and the SparkR package are on a host (the driver's, or the server's before it launches one).

The server imports this module to check a sparkr session's request before the launch; the driver
asks it again on its own host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, NamedTuple


class RSetup(NamedTuple):
    """Where R and SparkR are on this host."""

    rscript: str  # the R front end (absolute path)
    library: str  # an R library directory holding SparkR/; "" when R's own library has it
    archive: str  # SPARK_HOME/R/lib/sparkr.zip, unpacked at the R process's start; "" when unused


def r_command(conf: dict[str, str]) -> str:
    """The R front end Spark's own R runner uses for a driver: spark.r.driver.command, spark.r.command,
    the older spark.sparkr.r.command, else Rscript."""
    for key in ("spark.r.driver.command", "spark.r.command", "spark.sparkr.r.command"):
        if conf.get(key):
            return conf[key]
    return "Rscript"


def locate_sparkr(spark_home: str, conf: dict[str, str], env: Any, probe: bool = True) -> RSetup | str:
    """R and the SparkR package on this host, or what is missing (a sentence naming each thing).

    SparkR is looked for where Spark looks: SPARKR_PACKAGE_DIR, SPARK_HOME/R/lib/SparkR (a Spark
    distribution; pip's pyspark has no R/ directory), SPARK_HOME/R/lib/sparkr.zip (the archive
    Spark ships to YARN), then R's own library, which only R can tell: it is asked to load the
    SparkR namespace (a child process without a shell; about 1 s, and only when the directories
    have no SparkR). With `probe` False that last question is not asked.
    """
    command = r_command(conf)
    rscript = shutil.which(command, path=env.get("PATH"))
    directories = [d for d in env.get("SPARKR_PACKAGE_DIR", "").split(",") if d]
    lib = os.path.join(spark_home, "R", "lib") if spark_home else ""
    if lib:
        directories.append(lib)
    library = next((d for d in directories if os.path.isfile(os.path.join(d, "SparkR", "DESCRIPTION"))), "")
    archive = os.path.join(lib, "sparkr.zip") if lib and not library else ""
    archive = archive if archive and os.path.isfile(archive) else ""
    if rscript and (library or archive or (probe and r_has_sparkr(rscript, env))):
        return RSetup(rscript, library, archive)
    missing = []
    if not rscript:
        source = "" if command == "Rscript" else ", from spark.r.command,"
        missing.append(f"R is not installed (no '{command}'{source} on this host's PATH)")
    if not (library or archive):
        places = [os.path.join(d, "SparkR") for d in directories]
        if lib:
            places.append(os.path.join(lib, "sparkr.zip"))
        places.append("R's own library" if rscript else "R's own library (not asked: no R)")
        missing.append("the SparkR R package is not installed (looked in " + ", ".join(places) + ")")
    return "; ".join(missing)


def r_has_sparkr(rscript: str, env: Any) -> bool:
    """Whether R loads SparkR from its own library (installed there by hand)."""
    try:
        done = subprocess.run(
            [rscript, "--vanilla", "-e", 'cat(requireNamespace("SparkR", quietly = TRUE))'],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip().endswith(b"TRUE")
