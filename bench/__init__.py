"""Benchmarks: `python -m bench` (or `./streamwhisk bench`) measures a private stack against the issue's targets."""
