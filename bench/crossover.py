"""Where FFT convolution overtakes the direct folded product: 'fft' vs 'cpu' per filter length.

One bank (K filters, training mode, forward+backward by default) per filter length, both backends
timed in interleaved rounds (round r times every (length, backend) once, alternating which backend
goes first), so a load change on a shared machine hits both alike; the median over rounds is
reported. The crossover is the shortest measured length from which 'fft' is faster at every
longer measured length, with a log-linear interpolation of the time ratio between the two
neighbouring lengths. ``sincfb.backends.common.CPU_CROSSOVER_LENGTH`` encodes the result for
``backend='auto'``.

    python -m bench.crossover --threads 2 --out bench/results/crossover-cpu.json
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

import sincfb
from bench.common import csv_list, load_average, package_version, run_metadata, write_json_atomic

__all__ = ["main", "measure", "crossover_length"]

DEFAULT_LENGTHS = (251, 501, 751, 1001, 1501, 2001, 4001, 8001)


def _step(layer: torch.nn.Module, x: torch.Tensor, mode: str):
    """One timed call: forward+backward in training mode, or an eval-mode forward."""
    if mode == "forward+backward":
        def step():
            xi = x.clone().requires_grad_()
            layer(xi).sum().backward()
    else:
        def step():
            with torch.no_grad():
                layer(x)
    return step


def measure(args) -> list[dict]:
    """Interleaved timings: a row per (length, backend) with every round's seconds."""
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, args.samples)
    steps, rows = {}, {}
    for L in args.lengths:
        for backend in args.backends:
            layer = sincfb.FusedSincFilterbank(args.filters, L, pool_bins=args.bins,
                                               backend=backend)
            layer.train(args.mode == "forward+backward")
            steps[L, backend] = _step(layer, x, args.mode)
            steps[L, backend]()                      # warm-up: build, JIT, allocator
            rows[L, backend] = {"length": L, "backend": backend, "seconds": []}
    for r in range(args.rounds):
        for L in args.lengths:
            order = args.backends if r % 2 == 0 else list(reversed(args.backends))
            for backend in order:
                start = time.perf_counter()
                steps[L, backend]()
                rows[L, backend]["seconds"].append(time.perf_counter() - start)
        if not args.quiet:
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    for row in rows.values():
        row["median_s"] = statistics.median(row["seconds"])
    return list(rows.values())


def crossover_length(rows: list[dict], fast: str = "fft", direct: str = "cpu") -> Optional[dict]:
    """The shortest measured L from which ``fast`` wins at every longer L, and an interpolated
    length where the two times are equal (log-linear in the ratio); None if it never wins."""
    times = {(r["length"], r["backend"]): r["median_s"] for r in rows}
    lengths = sorted({r["length"] for r in rows})
    ratio = {L: times[L, fast] / times[L, direct] for L in lengths}
    first = None
    for L in reversed(lengths):
        if ratio[L] >= 1:
            break
        first = L
    if first is None:
        return None
    below = [L for L in lengths if L < first]
    estimate = float(first)
    if below:
        lo, hi = below[-1], first
        a, b = math.log(ratio[lo]), math.log(ratio[hi])
        estimate = lo + (hi - lo) * a / (a - b) if a != b else float(hi)
    return {"first_measured_length": first, "interpolated_length": round(estimate),
            "time_ratio_fft_over_cpu": {str(L): ratio[L] for L in lengths}}


def metadata(args, argv) -> dict:
    """The run's record (:func:`bench.common.run_metadata`) and the workload."""
    return {**run_metadata("bench.crossover", argv, versions={"numpy": package_version("numpy")}),
            "platform": platform.platform(),
            "workload": {"batch": args.batch, "samples": args.samples, "filters": args.filters,
                         "bins": args.bins, "mode": args.mode, "rounds": args.rounds}}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=csv_list(int), default=list(DEFAULT_LENGTHS))
    parser.add_argument("--backends", type=csv_list(), default=["cpu", "fft"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=48000)
    parser.add_argument("--filters", type=int, default=160)
    parser.add_argument("--bins", type=int, default=1024)
    parser.add_argument("--mode", choices=("forward+backward", "eval-forward"),
                        default="forward+backward")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    meta = metadata(args, argv)
    rows = measure(args)
    meta["loadavg_end"] = load_average()
    result = {"meta": meta, "rows": rows, "crossover": crossover_length(rows)}
    for row in sorted(rows, key=lambda r: (r["length"], r["backend"])):
        print(f"L={row['length']:5d} {row['backend']:4s} median {row['median_s'] * 1e3:9.1f} ms  "
              f"rounds {[round(s * 1e3) for s in row['seconds']]}")
    print("crossover:", result["crossover"] and {k: v for k, v in result["crossover"].items()
                                                   if k != "time_ratio_fft_over_cpu"})
    if args.out:
        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
