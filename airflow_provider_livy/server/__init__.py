"""A Livy-compatible Spark job server (batches and interactive sessions) that never hoards finished sessions."""
