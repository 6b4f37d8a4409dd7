"""What the server holds and for how long: the registry and its clocks, one lifecycle, recovery."""
