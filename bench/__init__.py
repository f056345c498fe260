"""Benchmarks of InfraBot Chains; run them with ``python -m bench`` (see README.md)."""
