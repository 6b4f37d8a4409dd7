"""The REPL that runs inside the Spark driver of an interactive session.

spark-submit's main Python file is this package as one zip (`driver.py`, built by the server's
`airflow_provider_livy.server.repl.driver_file`; Python runs a zip's `__main__.py` whatever its
name). It is self-contained (standard library + pyspark only, relative imports only): in cluster
deploy mode it runs on a node where our package is not installed. The server and this driver talk
over the channel below, which both sides implement exactly.

## Modules
- `main`: the start (Spark, the REPL, the HTTP API, the callback, the idle exit) and the end.
- `settings`: the LIVY_REPL_* environment below. `kinds`: session and statement kinds.
- `repl`: the statements' queue, bookkeeping and cancel; which interpreter runs each.
- `statement`: one statement, its states and view. `errors`: RequestError, StatementCancelled.
- `python`, `sql`, `scala`, `sparkr` (with `r_setup`: where R and SparkR are): the interpreters.
- `outputs`: values as JSON, magics, errors, the size cap. `capture`: what a statement prints.
- `cancel`: jobs first, then a signal into user code. `progress`: a job group's task counts.
- `http_api`: the API below. `callback`: the one call to the server. `idle`: the idle exit.
- `frames`: which code is the REPL's own. `log`: the driver log's lines.

## Launch
Environment (client/local mode: inherited from spark-submit; cluster mode: `spark.yarn.appMasterEnv.X`
or `spark.kubernetes.driverEnv.X` from a 0600 properties file, never the command line):
- `LIVY_REPL_SECRET` per-session secret; never printed.
- `LIVY_REPL_CALLBACK` URL this driver POSTs to once ready.
- `LIVY_REPL_KIND` the session kind (`pyspark`/`python`, `spark`/`scala`, `sparkr`/`r`, `sql`, `shared`).
- `LIVY_REPL_BIND` interface to listen on (default 127.0.0.1; 0.0.0.0 in cluster mode).
- `LIVY_REPL_IDLE_TIMEOUT` seconds (livy.rsc.server.idle-timeout, default 600): exit when no
  authenticated request arrived for that long, so a server that died for good leaves no driver behind.
- `LIVY_REPL_RETAINED` statements kept (livy.rsc.retained-statements, default 100).
- `LIVY_REPL_MAX_OUTPUT` max bytes of one statement's output as JSON (default 1 MiB); longer is cut
  with a marker.
- `LIVY_REPL_SQL_ROWS` rows a sql statement returns at most (livy.rsc.sql.num-rows, default 1000).
- `LIVY_REPL_NO_SPARK=1` (tests only): no SparkSession; pyspark statements run as plain Python.

Once the SparkSession exists and the HTTP server listens, the driver prints
`livy-repl: listening on http://<host>:<port>` (never the secret) and POSTs to LIVY_REPL_CALLBACK with
`Authorization: Bearer <secret>` and `{"address": "http://<host>:<port>", "appId", "sparkUiUrl"}`,
retrying with backoff on connection errors and 5xx. A 4xx answer means the server disowns this
driver: it stops and exits.

## HTTP API (JSON; every request needs `Authorization: Bearer <secret>`, else 401 `{"msg"}`)
Every authenticated request resets the idle-exit clock (a request in flight counts as activity).
- `GET /status[?wait=S&version=V]` -> `{"state": "idle"|"busy", "version", "lastActivity", "statements"}`;
  `version` grows at every statement state change; with `wait` the answer comes as soon as
  version != V (V defaults to the current version) or after S seconds. `lastActivity` (epoch ms) =
  last statement submitted, finished or cancelled, or the driver's start. `statements` counts since
  the driver started: `{"run": ended available, "failed": of those with an error output, "cancelled"}`.
- `POST /statements {"code", "kind"?}` -> 201 statement. Any session runs statements of kind
  pyspark, spark, sparkr and sql (Livy 0.5+); without `kind`, the session's. Unknown kind, `shared` as a
  statement kind, no kind in a `shared` session, and `sparkr` on a host without R or SparkR (the
  message names what is missing) -> 400. 429 when
  LIVY_REPL_RETAINED statements are already waiting or running (nothing could be dropped to keep the bound).
- `GET /statements?from=&size=&order=desc` -> `{"total_statements", "statements"}` (retained ones).
- `GET /statements/{sid}[?wait=S]` -> statement; with wait, answers when its state changes or after S.
- `POST /statements/{sid}/cancel` -> `{"msg": "canceled"}`.
- `POST /completion {"code", "kind", "cursor"}` -> `{"candidates"}`: Python names and attributes
  (rlcompleter), the Scala REPL's candidates for kind spark (member names, as its Tab shows them,
  e.g. `range` for `spark.ran`; [] until the Scala interpreter has started), [] for sql.
- `POST /shutdown` -> `{"msg": "shutting down"}`, then Spark stops and the process exits 0.

Statement = Livy's shape: `{"id", "code", "state", "output", "progress", "started", "completed"}`
(epoch ms, 0 when unset). States waiting -> running -> available; running -> cancelling -> cancelled;
waiting -> cancelled. Output ok: `{"status": "ok", "execution_count", "data": {mime: value}}`; error:
`{"status": "error", "execution_count", "ename", "evalue", "traceback": [lines]}`.

## Outputs
- pyspark: `text/plain` = stdout and stderr as written, then the repr of a final expression (as a
  Python shell shows it), trailing whitespace trimmed. A last line `%table expr`, `%json expr` or
  `%matplot expr` adds `application/vnd.livy.table.v1+json`, `application/json` or `image/png`
  (base64); `text/plain` is then present only when something was printed (Livy's rule). Table
  columns keep the order in which they first appear (Livy sorts dict keys).
- sql: `application/json` = `{"schema": <StructType JSON>, "data": [[values]]}`; dates and
  timestamps as ISO strings, decimals as numbers, binary as base64, NaN/Infinity as strings. When
  LIVY_REPL_SQL_ROWS cut rows, `"truncated": true` is added (Livy cuts silently).
- An output longer than LIVY_REPL_MAX_OUTPUT: text is cut and ends with `[livy-repl: output truncated ...]`;
  a structured value that does not fit is dropped with that marker in `text/plain`.

- spark (Scala): the Scala REPL of Spark's jars (IMain, class-based, `spark`, `sc` and spark-shell's
  imports bound; started at the first Scala statement, or in the background at launch for a `spark`
  session). `text/plain` = what the code printed (Console.out/err), then what the REPL reports
  (`val x: Int = 42`). A compile error: ename `Error`, evalue its first `error:` line; an exception:
  ename its class, evalue its message; traceback = every line printed. `%table x` / `%json x` as a
  last line as for Python (Datasets and RDDs give their first LIVY_REPL_SQL_ROWS rows).
  spark.repl.class.outputDir is set at Spark's start (a temp dir) so executors load REPL classes.
- sparkr (R): an Rscript child running SparkR on this JVM (Spark's RBackend, started through Py4J;
  R gets its port and secret as under Spark's R runner). Started at the first R statement, or in the
  background at launch for a `sparkr` session. `text/plain` = what R printed (visible values as its
  console prints them); an error: ename `Error`, evalue the first line of R's message, the traceback
  the lines printed and `Error in <call> : <message>`. See RInterpreter for cancel.

## Execution and cancel
Statements run one at a time, in order, on the MAIN thread (the HTTP server has its own threads),
each in Spark job group `livy-stmt-<id>`; progress = completed / total tasks of that group's jobs.
Cancel: `sc.cancelJobGroup`, then a signal to the main thread whose handler raises
`StatementCancelled` (a KeyboardInterrupt) in user code, repeated until the statement ends; a signal
also breaks a blocking call such as time.sleep. The handler never raises in the REPL's own frames,
so the bookkeeping around a statement cannot be torn. A Scala statement is never interrupted in
Python: its jobs are cancelled and its JVM thread gets Thread.interrupt (a sleep or wait ends).
"""
