"""Benchmarks: real ruroco processes (and fwknopd for comparison) on loopback.

Entry point is ``bench/run.sh``; it runs everything in a private network namespace so that
UDP counters and firewall changes are the run's own, and rewrites ``bench/RESULTS.md``.
"""
