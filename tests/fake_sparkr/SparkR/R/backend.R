# What the REPL driver needs of SparkR, spoken to a real org.apache.spark.api.r.RBackend: the
# connection from EXISTING_SPARKR_BACKEND_PORT and SPARKR_BACKEND_AUTH_SECRET, calls into the
# JVM, and setJobGroup. Requests are framed (a big-endian int length, then the body); strings R
# sends carry a trailing NUL, strings the JVM sends do not; values are typed by one character.

.state <- new.env()
.sparkREnv <- new.env()  # where SparkR keeps its connection (.sparkRCon)

writeInt <- function(con, value) writeBin(as.integer(value), con, endian = "big")

writeString <- function(con, value) {
  utf8 <- enc2utf8(value)
  writeInt(con, nchar(utf8, type = "bytes") + 1L)
  writeBin(utf8, con, endian = "big", useBytes = TRUE)
}

writeObject <- function(con, value) {
  type <- if (is.null(value)) "n" else if (inherits(value, "jobj")) "j" else if (is.character(value)) "c"
          else if (is.logical(value)) "b" else if (is.integer(value)) "i" else if (is.numeric(value)) "d"
          else stop("this SparkR stand-in cannot send a ", class(value)[[1L]])
  writeBin(charToRaw(type), con)
  switch(type,
    n = NULL,
    j = writeString(con, value$id),
    c = writeString(con, value),
    b = writeInt(con, as.integer(value)),
    i = writeInt(con, value),
    d = writeBin(as.double(value), con, endian = "big"))
}

readInt <- function(con) readBin(con, integer(), n = 1L, endian = "big")

readString <- function(con) rawToChar(readBin(con, raw(), n = readInt(con)))

readObject <- function(con) {
  type <- rawToChar(readBin(con, raw(), n = 1L))
  switch(type,
    n = NULL,
    c = readString(con),
    i = readInt(con),
    d = readBin(con, double(), n = 1L, endian = "big"),
    b = readInt(con) != 0L,
    j = structure(list(id = readString(con)), class = "jobj"),
    stop("this SparkR stand-in cannot read a value of type ", type))
}

invokeJava <- function(isStatic, objId, methodName, ...) {
  args <- list(...)
  body <- rawConnection(raw(0), "r+")
  writeInt(body, as.integer(isStatic))
  writeString(body, objId)
  writeString(body, methodName)
  writeInt(body, length(args))
  for (arg in args) writeObject(body, arg)
  bytes <- rawConnectionValue(body)
  close(body)
  con <- get(".sparkRCon", envir = .sparkREnv)
  writeInt(con, length(bytes))
  writeBin(bytes, con)
  flush(con)
  status <- readInt(con)
  while (identical(status, 1L)) status <- readInt(con)  # the backend's heartbeats during a long call
  if (length(status) == 0L) stop("no answer from the SparkR backend")
  if (status != 0L) stop(readString(con))
  readObject(con)
}

callJStatic <- function(className, methodName, ...) invokeJava(TRUE, className, methodName, ...)

callJMethod <- function(obj, methodName, ...) invokeJava(FALSE, obj$id, methodName, ...)

sparkR.session <- function() {
  port <- as.integer(Sys.getenv("EXISTING_SPARKR_BACKEND_PORT"))
  secret <- Sys.getenv("SPARKR_BACKEND_AUTH_SECRET")
  if (is.na(port) || !nzchar(secret)) stop("EXISTING_SPARKR_BACKEND_PORT and SPARKR_BACKEND_AUTH_SECRET must be set")
  con <- socketConnection(port = port, blocking = TRUE, open = "wb", timeout = 6000)
  writeString(con, secret)
  flush(con)
  if (readString(con) != "ok") stop("the SparkR backend refused the secret")
  assign(".sparkRCon", con, envir = .sparkREnv)
  .state$session <- callJStatic("org.apache.spark.sql.SparkSession", "active")
  .state$session
}

setJobGroup <- function(groupId, description, interruptOnCancel) {
  sc <- callJStatic("org.apache.spark.sql.api.r.SQLUtils", "getJavaSparkContext", .state$session)
  invisible(callJMethod(sc, "setJobGroup", groupId, description, interruptOnCancel))
}
