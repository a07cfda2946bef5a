"""Benchmarks: throughput and memory, each measured against a floor in the same run.

Run one with ``python -m benchmarks.<name>`` from the project root (``--quick``
for a smoke run).  Speed is printed, never asserted; see ``docs/performance.md``.
"""
