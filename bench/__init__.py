"""Benchmarks: the server and the provider measured against their anchors, side by side (see README.md)."""
