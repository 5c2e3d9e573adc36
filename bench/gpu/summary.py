"""The one-screen summary of a bench/gpu_check.sh run: pass/fail per stage and the three headline
ratios of issue 3's targets, written as ``summary.txt`` beside the run's JSONs::

    python -m bench.gpu.summary OUTDIR

Reads ``OUTDIR/status.txt`` (one line per stage: name, then an exit code or a word) and the JSONs
the stages wrote; a ratio whose run is missing or failed reads 'not measured'.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

TRITON = "sincfb-triton"
# exit codes of bench/gpu_check.sh's stages that are not plain failures
WORDS = {"0": "pass", "124": "TIMED OUT", "137": "KILLED (timeout)"}


def stage_lines(status: Path) -> list[str]:
    """'name: pass' / 'name: FAIL (exit 3)' / 'name: skipped (...)' per stage line."""
    lines = []
    for line in status.read_text().splitlines() if status.is_file() else []:
        name, _, rest = line.partition(" ")
        if rest.isdigit():
            rest = WORDS.get(rest, f"FAIL (exit {rest})")
        lines.append(f"  {name:30s} {rest}")
    return lines or ["  (no stage ran)"]


def _rows(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _triton_row(rows, **match):
    for row in rows:
        if row.get("impl") == TRITON and all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def headline_ratios(outdir: Path) -> list[tuple[str, float | None, str]]:
    """(what, value or None, target) for W2 f+b vs naive fp32, W2 f+b vs naive bf16 + compile,
    and W1 forward at L = 1001 as a fraction of the measured bf16 matmul rate."""
    w2 = _triton_row(_rows(outdir / "bench_w2.json"), workload="W2", mode="forward+backward")
    w1 = _triton_row(_rows(outdir / "bench_w1_L1001.json"), workload="W1", mode="forward",
                     L=1001)
    try:
        ceiling = json.loads((outdir / "ceilings.json").read_text())["bf16_matmul_tflops"]
    except (OSError, ValueError, KeyError, TypeError):
        ceiling = None
    fraction = None
    if w1 and w1.get("tflops") and ceiling:
        fraction = w1["tflops"] / ceiling
    return [("W2 fwd+bwd, naive fp32 / triton", w2 and w2.get("speedup_vs_naive_fp32"), ">= 10x"),
            ("W2 fwd+bwd, naive bf16+compile / triton",
             w2 and w2.get("speedup_vs_naive_bf16_compile"), ">= 4x"),
            ("W1 fwd L=1001, TFLOP/s / bf16 matmul rate", fraction, ">= 0.50")]


def summary(outdir: Path, note: str = "") -> str:
    lines = [f"gpu_check summary: {outdir}"] + ([note] if note else []) + ["stages:"]
    lines += stage_lines(outdir / "status.txt")
    lines.append("headline ratios (issue 3's targets):")
    for what, value, target in headline_ratios(outdir):
        shown = "not measured" if value is None else f"{value:.2f}"
        lines.append(f"  {what:42s} {shown:>20s}   target {target}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m bench.gpu.summary OUTDIR [NOTE]", file=sys.stderr)
        return 2
    outdir = Path(args[0])
    text = summary(outdir, " ".join(args[1:]))
    (outdir / "summary.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
