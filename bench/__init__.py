"""Benchmark harness of sincfb (DESIGN.md §6, workloads W1 and W2).

``python -m bench --help`` runs it; ``python -m bench.report RESULTS.json`` renders a results file as
a markdown table. The logic lives in :mod:`bench.harness`; this package ``__init__`` imports nothing,
so that rendering a report does not need torch.
"""
