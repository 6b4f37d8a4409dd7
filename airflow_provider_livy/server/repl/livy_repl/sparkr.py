"""R (kind sparkr): an R process running statements through SparkR on this driver's JVM."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from typing import Any

from .log import log
from .outputs import plain_error
from .r_setup import RSetup
from .settings import Settings

# The R side of the channel, run by `Rscript -e`. Each request on stdin is a line "<lines> <job group>"
# then that many lines of code; the answer is what the code printed, then "\n<marker><status>\n":
# `ok`, `error <message as hex> <call as hex>` or `interrupted`. Expressions run one by one in the
# global environment and visible values are printed, as R's console does; warnings print at once.
# Interrupts (a cancel's SIGINT) are held back while a request is read and an answer written, so
# neither is ever torn; one that arrived then (a cancel crossing the statement's end) is dropped.
R_LOOP = r"""
local({
  marker <- Sys.getenv("LIVY_REPL_R_MARKER")
  Sys.unsetenv("LIVY_REPL_R_MARKER")
  hex <- function(text) paste(as.character(charToRaw(enc2utf8(paste(text, collapse = "\n")))), collapse = "")
  run <- function(code, group) tryCatch({
    if (nzchar(group)) SparkR::setJobGroup(group, paste("Livy statement", group), TRUE)
    for (expression in parse(text = code, keep.source = FALSE)) {
      shown <- withVisible(eval(expression, envir = globalenv()))
      if (shown$visible) print(shown$value)
    }
    "ok"
  }, error = function(e) paste("error", hex(conditionMessage(e)), hex(deparse(conditionCall(e), nlines = 1L))),
     interrupt = function(e) "interrupted")
  input <- file("stdin", open = "r", encoding = "UTF-8")
  request <- NULL
  receive <- function() {
    header <- readLines(input, n = 1L)
    if (length(header) == 0L) quit(save = "no")
    fields <- strsplit(header, " ", fixed = TRUE)[[1L]]
    request <<- list(code = readLines(input, n = as.integer(fields[[1L]])),
                     group = if (length(fields) > 1L) fields[[2L]] else "")
  }
  answer <- function(status) {
    flush(stdout())
    flush(stderr())
    cat("\n", marker, status, "\n", sep = "")
    flush(stdout())
  }
  options(warn = 1)
  repeat {
    tryCatch(suspendInterrupts(receive()), interrupt = function(e) NULL)
    status <- run(request$code, request$group)
    tryCatch(suspendInterrupts(answer(status)), interrupt = function(e) NULL)
  }
})
"""
# Run first in the R process: SparkR on this driver's JVM, through the RBackend whose port and secret
# it reads from EXISTING_SPARKR_BACKEND_PORT / SPARKR_BACKEND_AUTH_SECRET (as under Spark's own R
# runner); sparkR.session() then gets the SparkContext and SparkSession Python already made.
# SparkR's calls into the JVM are wrapped: a cancel's SIGINT that lands while R waits for the JVM's
# answer (R cannot hold it back during a socket read) leaves that answer unread, and every later
# call would read the answer of the call before; the wrapper reads it first (status, heartbeats,
# then the value or the error text, as SparkR's own invokeJava does).
R_PRELUDE = """\
{library_path}suppressPackageStartupMessages(library(SparkR))
local({{
  ns <- asNamespace("SparkR")
  needed <- c("invokeJava", "readInt", "readString", "readObject", ".sparkREnv")
  if (all(vapply(needed, exists, TRUE, envir = ns, inherits = FALSE))) {{
    call <- get("invokeJava", envir = ns)
    drain <- function() {{
      conn <- get(".sparkRCon", envir = ns$.sparkREnv)
      status <- ns$readInt(conn)
      while (identical(status, 1L)) status <- ns$readInt(conn)
      if (identical(status, 0L)) ns$readObject(conn) else if (length(status) == 1L) ns$readString(conn)
    }}
    unlockBinding("invokeJava", ns)
    assign("invokeJava", function(...) tryCatch(call(...), interrupt = function(e) {{
      drain()
      stop("interrupted while waiting for the JVM", call. = FALSE)
    }}), envir = ns)
    lockBinding("invokeJava", ns)
  }}
}})
spark <- sparkR.session()
sc <- SparkR:::callJStatic("org.apache.spark.sql.api.r.SQLUtils", "getJavaSparkContext", spark)
Sys.unsetenv("SPARKR_BACKEND_AUTH_SECRET")
invisible(NULL)
"""
R_EVAL_CALL = "eval(expression, envir = globalenv())"  # R_LOOP's own call: not the user's
R_CANCEL_GRACE_S = 1.0  # after cancelJobGroup, before R is interrupted (SIGINT) in the middle of R code
R_KILL_AFTER_S = 15.0  # a cancelled statement R does not give up: the R process is killed (its state is lost)


class RInterpreter:
    """An R process (Rscript) that runs `sparkr` statements on the SparkSession Python uses.

    Started at its first statement (a `sparkr` session starts it in the background at launch), so
    a session that never runs R pays nothing. Spark's RBackend (the JVM end SparkR talks to) is
    started in this JVM through Py4J; the R process connects to it with the port and secret in its
    environment, as Spark's R runner passes them. Before each statement R sets the statement's job
    group on its backend connection, so cancel and progress work as for Python; a cancelled statement
    still running R code after R_CANCEL_GRACE_S is interrupted (SIGINT to R alone, its own process
    group), and after R_KILL_AFTER_S R is killed and the next statement starts a new one.
    """

    def __init__(self, spark: Any, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.lock = threading.Lock()  # guards the start
        self.cond = threading.Condition()  # the reader thread hands answers to the statement's thread
        self.process: subprocess.Popen[bytes] | None = None
        self.backend: Any = None
        self.failure: str | None = None
        self.unpacked: str | None = None
        self.marker = f"\x1elivy-repl-r:{os.urandom(8).hex()}:".encode()
        self.pending = bytearray()  # read, not yet known to be output or a marker
        self.output = bytearray()
        self.status: str | None = None

    def start(self, setup: RSetup) -> None:
        """Start the backend and R, and attach SparkR (any thread; again after R died)."""
        with self.lock:
            if self.failure is not None or (self.process is not None and self.process.poll() is None):
                return
            started = time.monotonic()
            try:
                self._launch(setup)
                status, text = self._request(R_PRELUDE.format(library_path=self._library_path(setup)), "")
            except Exception as exc:  # no backend, or R would not start: every R statement says so
                status, text = "error", f"{type(exc).__name__}: {exc}"
            if text.strip():
                log("R: " + text.strip().replace("\n", "\nlivy-repl: R: "))
            if status != "ok":
                self.failure = f"SparkR did not start in R: {r_error_text(status, text)}"
                log(self.failure)
                self.stop()
                return
            log(f"R with SparkR ready in {time.monotonic() - started:.1f} s")

    def _library_path(self, setup: RSetup) -> str:
        library = setup.library
        if setup.archive:
            if self.unpacked is None:
                self.unpacked = tempfile.mkdtemp(prefix="livy-repl-sparkr-")
                with zipfile.ZipFile(setup.archive) as archive:
                    archive.extractall(self.unpacked)
            library = self.unpacked
        return f".libPaths(c({json.dumps(library)}, .libPaths()))\n" if library else ""

    def _launch(self, setup: RSetup) -> None:
        jvm = self.spark._jvm
        conf = self.spark.sparkContext.getConf()
        if self.backend is None:
            self.backend = jvm.org.apache.spark.api.r.RBackend()
            bound = self.backend.init()
            self.port, self.secret = bound._1(), bound._2().secret()
            threading.Thread(target=self._serve, name="sparkr-backend", daemon=True).start()
        env = {
            **os.environ,
            "EXISTING_SPARKR_BACKEND_PORT": str(self.port),
            "SPARKR_BACKEND_AUTH_SECRET": self.secret,
            "SPARKR_BACKEND_CONNECTION_TIMEOUT": conf.get("spark.r.backendConnectionTimeout", "6000"),
            "LIVY_REPL_R_MARKER": self.marker.decode(),
        }
        with self.cond:
            self.pending.clear()
            self.output.clear()
            self.status = None
        self.process = subprocess.Popen(  # a fixed argument list, no shell
            [setup.rscript, "-e", R_LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a cancel's SIGINT reaches R alone
        )
        threading.Thread(target=self._read, args=(self.process,), name="sparkr-output", daemon=True).start()

    def _serve(self) -> None:
        try:
            self.backend.run()  # until close(): blocks this thread's Py4J connection, nothing else
        except Exception as exc:  # Spark stopping
            log(f"the SparkR backend stopped: {exc}")

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        """What R writes: statement output up to LIVY_REPL_MAX_OUTPUT (+1 byte, so a cut shows), and
        the markers that end statements."""
        stream = process.stdout
        assert stream is not None
        while True:
            chunk = os.read(stream.fileno(), 65536)
            with self.cond:
                if not chunk:
                    if self.process is process and self.status is None:
                        self.status = "exited"
                    self.cond.notify_all()
                    return
                self.pending += chunk
                self._scan()

    def _scan(self) -> None:
        """Move output from `pending` to `output`; a complete marker line ends the statement (cond held)."""
        limit = self.settings.max_output + 1
        at = self.pending.find(b"\n" + self.marker)
        keep = len(self.marker) + 1 if at < 0 else len(self.pending) - at
        text = self.pending[: len(self.pending) - keep]
        self.output += text[: max(0, limit - len(self.output))]
        del self.pending[: len(text)]
        if at < 0:
            return
        end = self.pending.find(b"\n", len(self.marker) + 1)
        if end < 0:
            return
        self.status = self.pending[len(self.marker) + 1 : end].decode("utf-8", "replace")
        del self.pending[: end + 1]
        self.cond.notify_all()

    def _request(self, code: str, group: str, cancelled: Any = None) -> tuple[str, str]:
        """Send code to R; its status (ok, error ..., interrupted, exited) and what it printed."""
        process = self.process
        assert process is not None and process.stdin is not None
        lines = code.split("\n")
        try:
            process.stdin.write(f"{len(lines)} {group}\n{code}\n".encode())
            process.stdin.flush()
        except OSError:
            pass  # R is gone: the reader says so
        cancel_seen = 0.0
        interrupted = False
        with self.cond:
            while self.status is None:
                self.cond.wait(0.2)
                if cancelled is None or not cancelled():
                    continue
                now = time.monotonic()
                cancel_seen = cancel_seen or now
                if now - cancel_seen > R_KILL_AFTER_S:
                    log("R did not stop after the cancel; killing it (the next sparkr statement starts a new one)")
                    self.cond.release()
                    try:
                        self.stop()
                    finally:
                        self.cond.acquire()
                    self.status = self.status or "exited"
                elif now - cancel_seen > R_CANCEL_GRACE_S and not interrupted:
                    interrupted = True  # once is enough: R keeps it pending until it can act on it
                    with contextlib.suppress(OSError):
                        process.send_signal(signal.SIGINT)
            status, text = self.status, self.output.decode("utf-8", "replace")
            self.status = None
            self.output.clear()
        if status == "exited":
            process.wait()
            status = f"exited {process.returncode}"
        return status, text

    def run(self, code: str, group: str, setup: RSetup, cancelled: Any) -> dict[str, Any]:
        """One statement: Livy's ok or error output (without execution_count)."""
        self.start(setup)
        if self.failure is not None:
            return plain_error("SparkRUnavailable", self.failure)
        if cancelled():
            return plain_error("StatementCancelled", "cancelled before it started")
        status, text = self._request(code, group, cancelled)
        if status == "ok":
            return {"status": "ok", "data": {"text/plain": text.rstrip()}}
        if status == "interrupted":
            return {**plain_error("StatementCancelled", "the R code was interrupted"), "traceback": text.splitlines(True)}
        if status.startswith("exited"):
            message = (
                f"the R process ended (exit code {status.split()[-1]}); its variables are lost, "
                "the next sparkr statement starts a new one"
            )
            return {**plain_error("RProcessExited", message), "traceback": text.splitlines(True)}
        message, call = r_error_parts(status)
        lines = [*text.splitlines(True), f"Error in {call} : {message}\n" if call else f"Error: {message}\n"]
        return {"status": "error", "ename": "Error", "evalue": message.split("\n", 1)[0], "traceback": lines}

    def stop(self) -> None:
        """End R (its process group) and close the backend; at driver exit, or when R would not stop."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        self.stop()
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()
        if self.unpacked is not None:
            shutil.rmtree(self.unpacked, ignore_errors=True)


def r_error_parts(status: str) -> tuple[str, str]:
    """The message and the call of an `error <hex> <hex>` status; no call for an error raised at
    the top of the statement (as R's console shows it: `Error: boom`)."""
    fields = status.split(" ")
    decoded = [bytes.fromhex(field).decode("utf-8", "replace") if field else "" for field in fields[1:3]]
    message, call = [*decoded, "", ""][:2]
    return message or "unknown error", "" if call in ("NULL", "", R_EVAL_CALL) else call


def r_error_text(status: str, text: str) -> str:
    if status.startswith("error"):
        message, _ = r_error_parts(status)
        return message
    return f"{status}: {text.strip()[-2000:]}"
