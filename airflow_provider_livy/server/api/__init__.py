"""HTTP: Livy's REST routes, the metrics endpoint (and, later, the pages)."""
