"""Benchmarks: `python -m bench` measures the registry and the gateway against a bare ceiling."""
