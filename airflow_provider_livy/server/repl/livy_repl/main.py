"""The driver's start and end: Spark, the REPL, its HTTP API, the callback and the idle exit."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from typing import Any

from .callback import advertised_host, call_back
from .cancel import CANCEL_SIGNAL
from .capture import Capture
from .http_api import serve
from .idle import watch_idle
from .log import log
from .repl import Repl
from .settings import Settings


def start_spark(settings: Settings) -> tuple[Any, str | None]:
    """The SparkSession, and the class directory for Scala statements we made for it (to remove at exit).

    spark.repl.class.outputDir must be set before the SparkContext starts, whatever the session's
    kind (any session may run a `spark` statement); it costs an empty directory.
    """
    if settings.no_spark:
        return None, None
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    class_dir = None
    if not SparkConf().get("spark.repl.class.outputDir", None):
        class_dir = tempfile.mkdtemp(prefix="livy-repl-classes-")
        builder = builder.config("spark.repl.class.outputDir", class_dir)
    return builder.getOrCreate(), class_dir


def main() -> None:
    """Serve statements until a shutdown, the idle exit or a 4xx to the callback; then stop Spark and exit 0."""
    settings = Settings(dict(os.environ))
    os.environ.pop("LIVY_REPL_SECRET")  # statements (and what they start) need not see it
    spark, class_dir = start_spark(settings)
    repl = Repl(settings, spark)
    if repl.kind == "spark" and repl.scala is not None:  # its first statement need not wait for the compiler
        threading.Thread(target=repl.scala.start, name="scala-start", daemon=True).start()
    if repl.kind == "sparkr" and repl.r is not None:  # nor for R and SparkR, when this host has them
        threading.Thread(target=repl.start_r, name="sparkr-start", daemon=True).start()
    sys.stdin = io.StringIO()  # input() in a statement fails at once instead of hanging
    # Spark 4 warns on every DataFrame.toJSON(); in a statement's text it breaks the clients that print
    # toJSON rows and parse the text back (pylivy's download, sparkmagic's %%sql), so it is not shown.
    warnings.filterwarnings("ignore", message="The return type of DataFrame.toJSON", category=UserWarning)
    sink = repl.python.sink
    repl.python.streams = (Capture(sys.stdout, sink), Capture(sys.stderr, sink))
    signal.signal(CANCEL_SIGNAL, repl.on_cancel_signal)
    server = serve(repl, settings)
    address = f"http://{advertised_host(settings.bind, spark)}:{server.server_address[1]}"
    log(f"listening on {address}")
    threading.Thread(target=call_back, args=(settings, repl, address, spark), name="callback", daemon=True).start()
    idle = (repl.idle, settings.idle_timeout, lambda: repl.stopping is not None, repl.request_stop)
    threading.Thread(target=watch_idle, args=idle, name="idle", daemon=True).start()
    repl.run_forever()
    if repl.r is not None:
        repl.r.close()
    if spark is not None:
        spark.stop()
    if class_dir is not None:
        shutil.rmtree(class_dir, ignore_errors=True)
    log("stopped")
    server.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # user code may have left non-daemon threads behind; nothing else is owed
