"""Speed ratios that survive a shared machine: the harness's models, timed in interleaved rounds.

``python -m bench`` times each case in its own process, one case after another, so a load change
between cases (another process starting) shifts the ratios. Here every round times one call of
each implementation back to back (alternating the order), and each ratio to the baseline is taken
within a round before the median over rounds. The models, inputs and steps are the harness's own
(:func:`bench.harness.build_model`, ``make_input``, ``make_step``); peak memory stays the
harness's job.

    python -m bench.interleaved --workload W2 --threads 2 --out bench/results/cpu-w2-interleaved.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.common import (csv_list, load_average, measured_auto_choices, run_metadata,
                          write_json_atomic)
from bench.harness import NAIVE, SIZES, build_model, folded_gflop, make_input, make_step
from bench.machine import measured_rates
from bench.peers import installed_peers, peer_fields

__all__ = ["main", "measure"]


def _spec(args, size, impl: str, mode: str) -> dict:
    return {"batch": size.batch, "samples": size.samples, "filters": size.filters,
            "lengths": list(size.lengths), "bins": size.bins, "device": "cpu", "seed": 0,
            "workload": args.workload, "length": size.lengths[-1], "mode": mode, "impl": impl}


def measure(args) -> list[dict]:
    """One row per (mode, impl): seconds per round, median, and the median within-round ratio."""
    size = SIZES[args.size]
    rows = []
    for mode in args.modes:
        steps = {}
        for impl in args.impls:
            spec = _spec(args, size, impl, mode)
            steps[impl] = make_step(build_model(spec), make_input(spec), mode, spec["seed"])
            steps[impl]()                                   # warm-up
        seconds = {impl: [] for impl in args.impls}
        for r in range(args.rounds):
            for impl in (args.impls if r % 2 == 0 else list(reversed(args.impls))):
                start = time.perf_counter()
                steps[impl]()
                seconds[impl].append(time.perf_counter() - start)
        gflop = folded_gflop(size.batch, size.samples, size.filters, size.lengths, mode)
        for impl in args.impls:
            ratios = [b / t for b, t in zip(seconds[args.baseline], seconds[impl])]
            median = statistics.median(seconds[impl])
            row = {"workload": args.workload, "mode": mode, "impl": impl,
                   "seconds": seconds[impl], "median_s": median,
                   f"ratio_{args.baseline}_over_impl": statistics.median(ratios),
                   "folded_gflops": gflop / median, **peer_fields(impl)}
            rows.append(row)
        if not args.quiet:
            print(f"{mode} done", file=sys.stderr)
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--workload", choices=("W1", "W2"), default="W2")
    parser.add_argument("--impls", type=csv_list(),
                        default=[NAIVE, "sincfb-cpu", "sincfb-fft", "sincfb-auto",
                                 *installed_peers()],
                        help="default: naive-fp32, the sincfb backends and every installed peer")
    parser.add_argument("--baseline", default=NAIVE)
    parser.add_argument("--modes", type=csv_list(),
                        default=["forward+backward", "eval-forward"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.baseline not in args.impls:
        parser.error(f"--baseline {args.baseline} must be one of --impls")
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    meta = run_metadata("bench.interleaved", argv)
    meta["workload"] = {"workload": args.workload, "batch": size.batch, "samples": size.samples,
                        "filters": size.filters, "lengths": list(size.lengths),
                        "bins": size.bins, "modes": args.modes, "impls": args.impls,
                        "rounds": args.rounds}
    meta["machine_rates"] = measured_rates()
    rows = measure(args)
    meta["loadavg_end"] = load_average()
    meta["auto_measured"] = measured_auto_choices("cpu")
    key = f"ratio_{args.baseline}_over_impl"
    for row in rows:
        print(f"{row['workload']} {row['mode']:17s} {row['impl']:12s} median "
              f"{row['median_s'] * 1e3:9.1f} ms  x{row[key]:.2f} vs {args.baseline}  rounds "
              f"{[round(s * 1e3) for s in row['seconds']]}")
    if args.out:
        write_json_atomic(args.out, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
