"""Scala (kind spark): the Scala REPL that ships in Spark's jars, driven through Py4J."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.parse
from typing import Any

from .log import log
from .outputs import plain_error, table_output
from .settings import Settings

COMPLETION_WAIT_S = 5.0  # a completion waits this long for a running Scala statement, then answers []

# Bound as spark-shell binds them (@transient: closures that capture the REPL's line objects stay
# serializable). LivyReplSupport gives statements a capped stdout and turns values into JSON for
# %table/%json; its instances are read back through vals, the one kind of term IMain hands out.
SCALA_PRELUDE = """\
object LivyReplSupport extends Serializable {
  final class CappedOutput(limit: Int) extends java.io.OutputStream {
    private val bytes = new java.io.ByteArrayOutputStream()
    override def write(b: Int): Unit = if (bytes.size < limit) bytes.write(b)
    override def write(b: Array[Byte], off: Int, len: Int): Unit =
      bytes.write(b, off, math.min(len, math.max(0, limit - bytes.size)))
    def take(): String = { val text = bytes.toString("UTF-8"); bytes.reset(); text }
  }
  private def render(value: Any): String =
    org.json4s.jackson.JsonMethods.compact(org.json4s.Extraction.decompose(value)(org.json4s.DefaultFormats))
  def json(value: Any, rows: Int): String = value match {
    case frame: org.apache.spark.sql.Dataset[_] => frame.toDF().toJSON.take(rows).mkString("[", ",", "]")
    case rdd: org.apache.spark.rdd.RDD[_] => render(rdd.take(rows))
    case other => render(other)
  }
}
@transient val livyReplOutput = new LivyReplSupport.CappedOutput(%(limit)d)
@transient val spark = org.apache.spark.sql.SparkSession.builder.getOrCreate()
@transient val sc = spark.sparkContext
import org.apache.spark.SparkContext._
import spark.implicits._
import spark.sql
import org.apache.spark.sql.functions._
"""
SCALA_MAGIC_TERM = "livyReplMagic"
SCALA_MAGICS = ("table", "json")
# `java.lang.RuntimeException: boom` (a runtime exception the REPL printed), as opposed to a compile error.
SCALA_EXCEPTION_LINE = re.compile(r"^((?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*)(?:: (.*))?$")


class ScalaInterpreter:
    """scala.tools.nsc.interpreter.IMain in this driver's JVM, on the SparkSession Python uses.

    Started at its first statement (a `spark` session starts it in the background at launch), so a
    session that never runs Scala pays nothing. Spark must have started with
    `spark.repl.class.outputDir` (start_spark sets it): executors load the classes the REPL compiles
    from there. Statements run on the calling (main) thread, which Py4J pins to one JVM thread: the
    statement's job group applies to the Scala code's jobs, and `interrupt` reaches that thread.
    """

    def __init__(self, spark: Any, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.lock = threading.Lock()  # guards the start
        self.intp: Any = None
        self.writer: Any = None
        self.buffer: Any = None
        self.output: Any = None
        self.stream: Any = None
        self.console_vars: list[Any] = []
        self.failure: str | None = None
        self.thread_lock = threading.Lock()  # orders interrupts against the end of a statement
        self.thread: Any = None
        # A statement and a completion never use the interpreter at once: both compile, and IMain's
        # state (line counter, imports, the reporter's buffer) is not made for two threads.
        self.busy = threading.Lock()
        self.completer: Any = None

    def start(self) -> None:
        """Create the interpreter and bind spark and sc (any thread; once)."""
        with self.lock:
            if self.intp is not None or self.failure is not None:
                return
            started = time.monotonic()
            try:
                self._create()
            except Exception as exc:  # the jars lack the REPL, or the prelude failed: every Scala statement says so
                self.failure = f"{type(exc).__name__}: {exc}"
                log(f"the Scala interpreter did not start: {self.failure}")
                return
            log(f"Scala interpreter ready in {time.monotonic() - started:.1f} s")

    def _create(self) -> None:
        jvm = self.spark._jvm
        conf = self.spark.sparkContext.getConf()
        outdir = conf.get("spark.repl.class.outputDir", None)
        if not outdir:
            raise RuntimeError("spark.repl.class.outputDir was not set when Spark started")
        arguments = ["-Yrepl-class-based", "-Yrepl-outdir", outdir, "-usejavacp"]
        jars = user_jars(conf.get("spark.jars", ""))
        if jars:
            arguments += ["-classpath", os.pathsep.join(jars)]
        settings = jvm.scala.tools.nsc.Settings()
        listing = jvm.java.util.ArrayList()
        for argument in arguments:
            listing.add(argument)
        settings.processArguments(jvm.scala.jdk.javaapi.CollectionConverters.asScala(listing).toList(), True)
        self.buffer = jvm.java.io.StringWriter()
        self.writer = jvm.java.io.PrintWriter(self.buffer)
        reporter = jvm.scala.tools.nsc.interpreter.shell.ReplReporterImpl(settings, self.writer)
        self.intp = jvm.scala.tools.nsc.interpreter.IMain(settings, reporter)
        result = self.intp.interpret(SCALA_PRELUDE % {"limit": self.settings.max_output}).toString()
        text = self._reported()
        if result != "Success":
            self.intp = None
            raise RuntimeError(f"binding spark and sc failed: {text.strip()}")
        self.output = self.intp.valueOfTerm("livyReplOutput").get()
        self.stream = jvm.java.io.PrintStream(self.output, True, "UTF-8")
        console = jvm.java.lang.Class.forName("scala.Console$")
        module = console.getField("MODULE$").get(None)
        for name in ("outVar", "errVar"):  # Console.out/err are thread-local DynamicVariables
            field = console.getDeclaredField(name)
            field.setAccessible(True)
            self.console_vars.append(field.get(module))

    def _reported(self) -> str:
        """What the REPL reported since the last call (results, compile errors, exceptions)."""
        self.writer.flush()
        text = self.buffer.toString()
        self.buffer.getBuffer().setLength(0)
        return text

    def _interpret(self, code: str) -> tuple[str, str, str]:
        """Result (Success, Error, Incomplete), what the code printed, what the REPL reported."""
        result = self.intp.interpret(code).toString()
        return result, self.output.take(), self._reported()

    def run(self, code: str, cancelled: Any) -> dict[str, Any]:
        """One statement: Livy's ok or error output (without execution_count)."""
        self.start()
        if self.failure is not None:
            return plain_error("ScalaUnavailable", self.failure)
        if cancelled():
            return plain_error("StatementCancelled", "cancelled before it started")
        body, magic = split_magic(code)
        jvm = self.spark._jvm
        with self.thread_lock:
            self.thread = jvm.java.lang.Thread.currentThread()
        for variable in self.console_vars:
            getattr(variable, "value_$eq")(self.stream)  # this thread's Console.out/err: the statement's buffer
        with self.busy:
            return self._run(body, magic)

    def _run(self, body: str, magic: str | None) -> dict[str, Any]:
        jvm = self.spark._jvm
        try:
            text = ""
            if body.strip():
                result, printed, reported = self._interpret(body)
                if result == "Error" and not (printed + reported).strip():
                    result, printed, reported = self._interpret("{\n" + body + "\n}")  # comments only
                if result != "Success":
                    return scala_error(result, printed, reported)
                text = (printed + reported).rstrip()
            if magic is None:
                return {"status": "ok", "data": {"text/plain": text}}
            data = self._magic(magic)
            if data.get("status") == "error":
                return data
            return {"status": "ok", "data": {"text/plain": text, **data} if text else data}
        finally:
            with self.thread_lock:
                self.thread = None
                jvm.java.lang.Thread.interrupted()  # an interrupt that came as the statement ended
            self.output.take()

    def _magic(self, line: str) -> dict[str, Any]:
        name, _, expression = line[1:].strip().partition(" ")
        if name not in SCALA_MAGICS:
            return plain_error("UnknownMagic", f"unknown magic command '%{name}': use %table or %json")
        if not expression.strip():
            return plain_error("ValueError", f"%{name} needs a value, e.g. %{name} x")
        rows = self.settings.sql_rows
        result, printed, reported = self._interpret(
            f"val {SCALA_MAGIC_TERM} = LivyReplSupport.json(({expression.strip()}), {rows})"
        )
        if result != "Success":
            return scala_error(result, printed, reported)
        value = json.loads(self.intp.valueOfTerm(SCALA_MAGIC_TERM).get())
        if name == "json":
            return {"application/json": value}
        try:
            return table_output(value, rows)
        except TypeError as exc:
            return plain_error("TypeError", str(exc))

    def complete(self, code: str, cursor: int) -> list[str]:
        """The Scala REPL's completions at the cursor (its presentation compiler, as a shell's Tab):
        the names that complete the word there, each once. Empty while the interpreter is not
        running (a completion never starts it) or a statement holds it longer than COMPLETION_WAIT_S."""
        if self.intp is None or not self.busy.acquire(timeout=COMPLETION_WAIT_S):
            return []
        try:
            if self.completer is None:
                shell = self.spark._jvm.scala.tools.nsc.interpreter.shell
                self.completer = shell.ReplCompletion(self.intp, shell.Accumulator())
            result = self.completer.complete(code, cursor, True)  # True: only names that match the word
            names = result.candidates().iterator()
            candidates: list[str] = []
            while names.hasNext():
                name = names.next().name()
                if name not in candidates:
                    candidates.append(name)
            return candidates
        finally:
            self._reported()  # whatever the presentation compiler reported is not a statement's output
            self.busy.release()

    def interrupt(self) -> None:
        """Interrupt the JVM thread running a statement (cancel), if one is running."""
        with self.thread_lock:
            if self.thread is not None:
                self.thread.interrupt()


def split_magic(code: str) -> tuple[str, str | None]:
    """The code before a last line `%magic expression`, and that line (None without one)."""
    lines = code.rstrip().split("\n")
    if lines and lines[-1].lstrip().startswith("%"):
        return "\n".join(lines[:-1]), lines[-1].strip()
    return code, None


def scala_error(result: str, printed: str, reported: str) -> dict[str, Any]:
    """Livy's error shape from what the Scala REPL reported: an exception's class and message, or the
    compile error's first line; the traceback is every line it printed."""
    if result == "Incomplete":
        return plain_error("Error", "incomplete statement")
    lines = [line for line in (printed + reported).splitlines(keepends=True)]
    reported_lines = [line.strip() for line in reported.splitlines() if line.strip()]
    first = reported_lines[0] if reported_lines else "unknown error"
    exception = SCALA_EXCEPTION_LINE.match(first)
    if exception:
        return {"status": "error", "ename": exception.group(1), "evalue": exception.group(2) or "", "traceback": lines}
    evalue = next((line for line in reported_lines if "error:" in line), first)
    return {"status": "error", "ename": "Error", "evalue": evalue, "traceback": lines}


def user_jars(spark_jars: str) -> list[str]:
    """The local files among spark.jars, for the Scala compiler's classpath (as spark-shell adds them)."""
    paths = []
    for entry in filter(None, (item.strip() for item in spark_jars.split(","))):
        url = urllib.parse.urlsplit(entry)
        path = urllib.parse.unquote(url.path) if url.scheme in ("file", "local") else entry if not url.scheme else ""
        if path and os.path.isfile(path):
            paths.append(path)
    return paths
