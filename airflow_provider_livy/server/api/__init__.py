"""HTTP: Livy's REST routes, the metrics endpoint, the API docs and the web UI."""
