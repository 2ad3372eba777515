"""Benchmarks: `python -m bench` measures the registry, the gateway and two workflows through
the gateway (referral create + accept, grant request + approve + disburse) against a bare
ceiling."""
