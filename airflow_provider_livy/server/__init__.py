"""A Livy-compatible batch server that runs spark-submit and never hoards finished sessions."""
