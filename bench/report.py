"""Render a results JSON of ``python -m bench`` as a markdown table.

Usage: ``python -m bench.report RESULTS.json``. Needs only the standard library (no torch).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

__all__ = ["render_markdown", "main"]

# (header, row key, format) of the table's columns after the identifying ones.
COLUMNS = (
    ("median ms", "median_ms", "{:.3f}"),
    ("IQR ms", "iqr_ms", "{:.3f}"),
    ("GFLOP", "gflop", "{:.3f}"),
    ("TFLOP/s", "tflops", "{:.4f}"),
    ("peak MB", "peak_mem_mb", "{:.1f}"),
    ("× naive-fp32", "speedup_vs_naive_fp32", "{:.2f}"),
    ("× bf16-compile", "speedup_vs_naive_bf16_compile", "{:.2f}"),
    ("mem / naive-fp32", "mem_ratio_vs_naive_fp32", "{:.2f}"),
)


def _cell(value, fmt: str) -> str:
    """A formatted number, or an em dash when the value is missing."""
    return "—" if value is None else fmt.format(value)


def _row_cells(row: dict) -> list[str]:
    ident = [str(row.get(k, "")) for k in ("workload", "mode", "L", "impl")]
    if "error" in row:   # one error cell instead of numbers; the full text goes below the table
        return ident + ["error"] + ["—"] * (len(COLUMNS) - 1)
    return ident + [_cell(row.get(key), fmt) for _, key, fmt in COLUMNS]


def _header(meta: dict) -> str:
    size = meta.get("size", {})
    versions = meta.get("versions", {})
    return (f"**{meta.get('device', '?')}** (torch threads: {meta.get('threads', '?')}) · "
            f"size {size.get('name', '?')} (B={size.get('batch')}, N={size.get('samples')}, "
            f"K={size.get('filters')}, P={size.get('bins')}) · torch {versions.get('torch')} · "
            f"commit {str(meta.get('git_commit', '?'))[:12]}"
            f"{'-dirty' if str(meta.get('git_commit', '')).endswith('-dirty') else ''} · "
            f"{meta.get('date', '?')} · {meta.get('isolation', '?')} · "
            f"auto backend by L: {meta.get('auto_backend', {})}")


def _errors(rows: list[dict]) -> list[str]:
    return [f"- {r['workload']} {r['mode']} L={r['L']} {r['impl']}: {r['error'].splitlines()[0]}"
            for r in rows if "error" in r]


def render_markdown(results: dict) -> str:
    """The run's header line, a markdown table of its rows, and the errors if any."""
    headers = ["workload", "mode", "L", "impl"] + [h for h, _, _ in COLUMNS]
    lines = [_header(results.get("meta", {})), "",
             "| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i < 4 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(_row_cells(r)) + " |" for r in results.get("rows", [])]
    errors = _errors(results.get("rows", []))
    if errors:
        lines += ["", "Errors:"] + errors
    lines += ["", "× columns: baseline time / this time (higher is faster); "
              "mem / naive-fp32: this peak / naive peak (lower is leaner)."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Print the markdown rendering of the results file given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a JSON file written by python -m bench")
    args = parser.parse_args(argv)
    print(render_markdown(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:   # piped into `head` and the like: not a failure of the report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # as the Python docs advise
        sys.exit(1)
