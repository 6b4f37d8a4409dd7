"""Where a Spark driver runs and how it is followed: the spark-submit command, the supervisor, driver logs."""
