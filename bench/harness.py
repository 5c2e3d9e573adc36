"""Benchmark harness for workloads W1 (one bank) and W2 (the three-bank front-end), DESIGN.md §6.

Every implementation of a workload is measured in the same run, so the ratios between them are
what to quote (absolute times drift between machines):

- ``naive-fp32``: ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` in float32;
- ``naive-bf16-compile``: the same under bf16 autocast, wrapped in ``torch.compile``;
- ``sincfb-<backend>``: ``FusedSincFilterbank(..., backend=<backend>)`` for each requested backend
  (by default every backend registered and available on the device, found at run time).

Timing: ``triton.testing.do_bench`` medians (CUDA events) on CUDA, ``torch.utils.benchmark``
medians on CPU. Peak memory: the CUDA allocator's high-water mark on CUDA; on CPU the resident-set
high-water mark of a fresh 'spawn' subprocess per case, so earlier cases cannot pollute it.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import gc
import multiprocessing
import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
from torch import nn

import sincfb
from sincfb._build import quiet_cuda_home_notice as quiet_cuda_home_warning
from bench.common import (SAMPLE_RATE, BF16Autocast, add_run_arguments, csv_list, load_average,
                          measured_auto_choices, package_version, ratio, results_path,
                          run_metadata, write_json_atomic)
from bench.peers import PEERS, installed_peers, make_peer_bank, peer_fields

__all__ = ["Size", "SIZES", "MODES", "main", "parse_args", "plan_cases", "run_case", "run_cases",
           "add_ratios", "folded_gflop", "collect_meta"]

NAIVE = "naive-fp32"
NAIVE_COMPILED = "naive-bf16-compile"
BASELINES = (NAIVE, NAIVE_COMPILED)
COMPILED = (NAIVE_COMPILED, "naive-fp32-compile")
SINCFB_PREFIX = "sincfb-"
ALL_MODES = ("forward", "forward+backward", "eval-forward")
MODES = {"W1": ALL_MODES, "W2": ("forward+backward", "eval-forward")}
# Backward costs two folded products (filter gradient and input gradient), DESIGN.md §3.
FLOP_MULTIPLIER = {"forward": 1, "forward+backward": 3, "eval-forward": 1}
CPU_MIN_TIME = {"tiny": 0.05}      # seconds per timed case; tiny must finish in seconds
DEFAULT_MIN_TIME = 0.5
MIN_RUNS = 5                       # timed blocks per CPU case, at least
MB = 2 ** 20


@dataclass(frozen=True)
class Size:
    """Problem size: B clips of N samples, K filters per bank, filter lengths, P pooled bins."""

    batch: int
    samples: int
    filters: int
    lengths: tuple[int, ...]
    bins: int


SIZES = {
    "tiny": Size(2, 4000, 16, (31, 63, 127), 64),           # tests: seconds
    "small": Size(2, 16000, 40, (251, 501, 1001), 256),     # CPU demo: a minute or two
    "cpu": Size(4, 48000, 160, (251, 501, 1001), 1024),     # the CPU target size
    "paper": Size(32, 48000, 160, (251, 501, 1001), 1024),  # the paper's size, for GPUs
}


# ----------------------------------------------------------------------------- models

def naive_bank(filters: int, length: int, bins: int) -> nn.Module:
    """The unfused composite that ``FusedSincFilterbank`` replaces."""
    return nn.Sequential(sincfb.SincConv(filters, length, SAMPLE_RATE), nn.BatchNorm1d(filters),
                         nn.ReLU(), nn.AdaptiveAvgPool1d(bins))


def make_bank(impl: str, filters: int, length: int, bins: int) -> nn.Module:
    """One bank of implementation ``impl`` (the naive composite for both naive variants and its
    compiled fp32 peer; the peers of :mod:`bench.peers`)."""
    if impl.startswith(SINCFB_PREFIX):
        return sincfb.FusedSincFilterbank(filters, length, SAMPLE_RATE, pool_bins=bins,
                                          backend=impl[len(SINCFB_PREFIX):])
    if impl in BASELINES:
        return naive_bank(filters, length, bins)
    if impl in PEERS:
        return make_peer_bank(impl, filters, length, bins, naive_bank(filters, length, bins))
    raise ValueError(f"unknown implementation {impl!r}")


class MultiBankFrontEnd(nn.Module):
    """W2: LayerNorm over the clip's samples, then one bank per length, stacked to (B, banks, K, P)."""

    def __init__(self, samples: int, banks: list[nn.Module]):
        super().__init__()
        self.norm = nn.LayerNorm(samples)
        self.banks = nn.ModuleList(banks)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) raw audio -> (B, banks, K, P)."""
        normed = self.norm(waveforms)
        return torch.stack([bank(normed) for bank in self.banks], dim=1)


def build_model(spec: dict) -> nn.Module:
    """The module a case times, on the case's device, in training or eval mode."""
    torch.manual_seed(spec["seed"])   # same parameters whatever the implementation
    lengths = [spec["length"]] if spec["workload"] == "W1" else spec["lengths"]
    banks = [make_bank(spec["impl"], spec["filters"], L, spec["bins"]) for L in lengths]
    model = banks[0] if spec["workload"] == "W1" else MultiBankFrontEnd(spec["samples"], banks)
    model = model.to(spec["device"]).train(spec["mode"] != "eval-forward")
    if spec["impl"] in COMPILED:
        # A fresh dynamo state per case: in one process, the shared wrapper code object would
        # otherwise hit the recompile limit after a few cases and silently fall back to eager.
        torch._dynamo.reset()
        if spec["impl"] == NAIVE_COMPILED:
            model = BF16Autocast(model, torch.device(spec["device"]).type)
        model = torch.compile(model)
    return model


def make_input(spec: dict) -> torch.Tensor:
    """Random (B, 1, N) audio; it requires grad in training modes (see :func:`make_step`)."""
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    x = torch.randn(spec["batch"], 1, spec["samples"], generator=gen).to(spec["device"])
    # With x requiring grad, backward computes both folded products (filter and input
    # gradients), as the FLOP model counts and as W2's banks need (they follow a LayerNorm).
    return x.requires_grad_(spec["mode"] != "eval-forward")


def make_step(model: nn.Module, x: torch.Tensor, mode: str, seed: int) -> Callable[[], torch.Tensor]:
    """A no-argument function running one iteration of ``mode``; it returns the output."""
    if mode == "eval-forward":
        def step():
            with torch.no_grad():
                return model(x)
        return step
    if mode == "forward":
        return lambda: model(x)   # training forward: builds and then drops the autograd graph
    grad = []                     # the random output gradient, drawn once the output is known

    def step():
        model.zero_grad(set_to_none=True)   # no accumulation: every iteration does the same work
        x.grad = None
        out = model(x)
        if not grad:
            gen = torch.Generator().manual_seed(seed + 2)
            grad.append(torch.randn(out.shape, generator=gen).to(out.device, out.dtype))
        out.backward(grad[0])
        return out
    return step


# ----------------------------------------------------------------------------- measurement

def rss_bytes() -> int:
    """Current resident set size of this process (from /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the resident-set high-water mark to the current RSS (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_heap() -> None:
    """Collect garbage and hand free heap pages back to the OS.

    Without this, glibc keeps freed blocks mapped and the next allocations reuse them without
    raising the RSS, which would hide part of the next measured peak.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def synchronize(device: str) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(step: Callable, calls: int, device: str) -> float:
    """Run ``step`` ``calls`` times (compilation happens here); return the seconds it took."""
    start = time.perf_counter()
    for _ in range(calls):
        step()
    synchronize(device)
    return time.perf_counter() - start


def cpu_rss_probe(step: Callable, calls: int) -> tuple[float, bool]:
    """Peak RSS growth in MB over ``calls`` calls of ``step``, and whether the mark could be reset."""
    release_free_heap()
    base = rss_bytes()                  # just before the first call of the probe
    was_reset = reset_peak_rss()
    for _ in range(calls):
        step()
    return max(peak_rss_bytes() - base, 0) / MB, was_reset


def cuda_memory_probe(step: Callable, device: str, calls: int = 2) -> float:
    """Peak CUDA allocator growth in MB over ``calls`` calls of ``step``."""
    synchronize(device)
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(calls):
        step()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / MB


def time_cpu(step: Callable, min_time: float) -> dict:
    """Median and IQR (ms) of ``step`` with ``torch.utils.benchmark``'s blocked autorange.

    Repeats the autorange until there are at least ``MIN_RUNS`` timed blocks: with a short
    ``min_time`` one slow call (e.g. another process taking the cores) could otherwise be the
    only sample, and the median would be that outlier.
    """
    from torch.utils import benchmark
    # Timer defaults to one thread; time with the threads the case was configured to use.
    timer = benchmark.Timer(stmt="step()", globals={"step": step},
                            num_threads=torch.get_num_threads())
    parts = [timer.blocked_autorange(min_run_time=min_time)]
    while sum(len(m.times) for m in parts) < MIN_RUNS:
        parts.append(timer.blocked_autorange(min_run_time=min_time))
    m = parts[0] if len(parts) == 1 else benchmark.Measurement.merge(parts)[0]
    return {"median_ms": m.median * 1e3, "iqr_ms": m.iqr * 1e3, "runs": len(m.times),
            "timed_calls": sum(len(p.raw_times) * p.number_per_run for p in parts)}


def time_cuda(step: Callable, min_time: float) -> dict:
    """Median and IQR (ms) of ``step`` with ``triton.testing.do_bench`` (CUDA events)."""
    from triton.testing import do_bench   # lazily: CPU-only runs need no triton import
    q25, q50, q75 = do_bench(step, rep=max(100, int(min_time * 1000)), quantiles=[0.25, 0.5, 0.75])
    return {"median_ms": q50, "iqr_ms": q75 - q25}


# ----------------------------------------------------------------------------- one case

def bank_label(lengths) -> str:
    """The 'L' column of W2 rows."""
    return "three-bank" if len(lengths) == 3 else f"{len(lengths)}-bank"


def base_row(spec: dict) -> dict:
    """The identifying fields of a result row, plus its folded FLOP count."""
    lengths = [spec["length"]] if spec["workload"] == "W1" else spec["lengths"]
    gflop = folded_gflop(spec["batch"], spec["samples"], spec["filters"], lengths, spec["mode"])
    row = {"workload": spec["workload"], "mode": spec["mode"],
           "L": spec["length"] if spec["workload"] == "W1" else bank_label(lengths),
           "impl": spec["impl"], "batch": spec["batch"], "gflop": gflop}
    return {**row, **peer_fields(spec["impl"])}


def cpu_memory_fields(step: Callable, warm_base: int, warm_reset: bool) -> dict:
    """Peak RSS growth over the warm-up (measured from ``warm_base``) and over two later calls.

    The warm-up peak includes one-off costs (compilation, lazy initialisation), so the reported
    ``peak_mem_mb`` is the later probe's, unless the high-water mark could not be reset.
    """
    warm_peak = max(peak_rss_bytes() - warm_base, 0) / MB
    peak, probe_reset = cpu_rss_probe(step, 2)
    return {"warmup_peak_mem_mb": warm_peak,
            "peak_mem_mb": peak if (warm_reset and probe_reset) else warm_peak}


def measure(spec: dict) -> dict:
    """Build, warm up, probe memory and time one case; return the measured fields."""
    device, cuda = spec["device"], torch.device(spec["device"]).type == "cuda"
    step = make_step(build_model(spec), make_input(spec), spec["mode"], spec["seed"])
    isolated_cpu = spec["isolated"] and not cuda
    if isolated_cpu:
        release_free_heap()
        warm_base, warm_reset = rss_bytes(), reset_peak_rss()
    fields = {"warmup_s": warm_up(step, 3 if spec["impl"] in COMPILED else 2, device)}
    if cuda:
        fields["peak_mem_mb"] = cuda_memory_probe(step, device)
    elif isolated_cpu:
        fields.update(cpu_memory_fields(step, warm_base, warm_reset))
    else:
        fields["peak_mem_mb"] = None   # in-process on CPU: earlier cases pollute the RSS mark
    fields.update(time_cuda(step, spec["min_time"]) if cuda else time_cpu(step, spec["min_time"]))
    return fields


def run_case(spec: dict) -> dict:
    """Run one case; a failure becomes a row with an ``error`` field. Picklable for subprocesses."""
    row, start = base_row(spec), time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(spec["threads"])
    try:
        with quiet_cuda_home_warning():
            row.update(measure(spec))
        if row.get("median_ms"):
            row["tflops"] = row["gflop"] / row["median_ms"]   # GFLOP/ms == TFLOP/s
    except Exception as exc:   # noqa: BLE001 -- any failure is a result, the run goes on
        row["error"] = f"{type(exc).__name__}: {exc}".strip()[:2000]
        row["traceback"] = traceback.format_exc()[-4000:]
    finally:
        torch.set_num_threads(threads)   # in-process runs must not leak the setting
    row["case_wall_s"] = time.perf_counter() - start
    return row


def run_isolated(spec: dict) -> dict:
    """Run one case in a fresh 'spawn' subprocess, so its peak RSS is its own."""
    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                                    max_tasks_per_child=1) as pool:
            return pool.submit(run_case, spec).result()
    except Exception as exc:   # noqa: BLE001 -- e.g. the child was killed (out of memory)
        return {**base_row(spec), "error": f"subprocess failed: {type(exc).__name__}: {exc}"}


# ----------------------------------------------------------------------------- the run

def folded_gflop(batch: int, samples: int, filters: int, lengths, mode: str) -> float:
    """Folded GFLOP of ``mode``: B K (L+1) N_out per bank and folded product, summed over banks."""
    per_pass = sum(batch * filters * (L + 1) * (samples - L + 1) for L in lengths)
    return FLOP_MULTIPLIER[mode] * per_pass / 1e9


def implementations(args, device_type: str) -> list[str]:
    """The implementations to compare: --impls if given, else naive ones + one per backend."""
    if args.impls:
        impls = list(args.impls)
    else:
        backends = args.backends or sincfb.available_backends(device_type)
        impls = list(BASELINES) + [SINCFB_PREFIX + b for b in backends]
        if args.peers:
            impls += installed_peers()
    return [i for i in impls if not (args.no_compile and i in COMPILED)]


def plan_cases(args, size: Size, device: str) -> list[dict]:
    """Every (workload, length, mode, implementation) case, baselines next to the others."""
    common = {"batch": size.batch, "samples": size.samples, "filters": size.filters,
              "lengths": list(size.lengths), "bins": size.bins, "device": device,
              "min_time": args.min_time, "threads": args.threads, "seed": 0,
              "isolated": args.isolate}
    impls = implementations(args, torch.device(device).type)
    specs = []
    for workload in args.workloads:
        modes = [m for m in MODES[workload] if m in args.modes]
        for length in (size.lengths if workload == "W1" else [None]):
            for mode in modes:
                specs += [{**common, "workload": workload, "length": length, "mode": mode,
                           "impl": impl} for impl in impls]
    return specs


def progress_line(index: int, total: int, row: dict) -> str:
    """One line per finished case."""
    head = f"[{index}/{total}] {row['workload']} {row['mode']} L={row['L']} {row['impl']}: "
    if "error" in row:
        return head + "ERROR " + row["error"].splitlines()[0][:200]
    mem = row.get("peak_mem_mb")
    mem_text = "n/a" if mem is None else f"{mem:.1f} MB"
    return (head + f"{row['median_ms']:.3f} ms (iqr {row.get('iqr_ms', 0):.3f}), "
            f"peak {mem_text}, warm-up {row.get('warmup_s', 0):.1f} s, "
            f"case {row['case_wall_s']:.1f} s")


def run_cases(specs: list[dict], quiet: bool = False) -> list[dict]:
    """Run the cases one at a time (isolated or in-process per spec), printing progress to stderr."""
    rows = []
    for index, spec in enumerate(specs, 1):
        start = time.perf_counter()
        row = run_isolated(spec) if spec["isolated"] else run_case(spec)
        row["case_wall_s"] = time.perf_counter() - start   # includes the subprocess start-up
        rows.append(row)
        if not quiet:
            print(progress_line(index, len(specs), row), file=sys.stderr, flush=True)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Add speedups vs each baseline (t_baseline / t_impl) and memory vs naive-fp32 (m_impl / m_naive)."""
    def key(row):
        return row["workload"], row["mode"], str(row["L"])
    ok = {(key(r), r["impl"]): r for r in rows if "error" not in r}
    for row in rows:
        for baseline in BASELINES:
            base = ok.get((key(row), baseline), {})
            row["speedup_vs_" + baseline.replace("-", "_")] = ratio(base.get("median_ms"),
                                                                    row.get("median_ms"))
        naive = ok.get((key(row), NAIVE), {})
        row["mem_ratio_vs_naive_fp32"] = ratio(row.get("peak_mem_mb"), naive.get("peak_mem_mb"))


# ----------------------------------------------------------------------------- metadata and output

def auto_backends(size: Size, device_type: str) -> dict:
    """What ``backend='auto'``'s static rule gives per filter length (the choice may depend on
    L); large problems may be calibrated instead, see :func:`measured_auto_choices`."""
    out = {}
    for L in size.lengths:
        try:
            layer = sincfb.FusedSincFilterbank(size.filters, L, SAMPLE_RATE, pool_bins=size.bins)
            out[str(L)] = layer.resolved_backend(device_type)
        except Exception as exc:   # noqa: BLE001 -- metadata must not stop the run
            out[str(L)] = f"error: {exc}"
    return out


def collect_meta(args, size: Size, device: str, argv: list[str]) -> dict:
    """The run's record (:func:`bench.common.run_metadata`) and the parameters of the run."""
    device_type = torch.device(device).type
    return {
        **run_metadata("bench", argv, device, args.threads,
                       {"triton": package_version("triton"),
                        "torchaudio": package_version("torchaudio")}),
        "size": {"name": args.size, **asdict(size), "sample_rate": SAMPLE_RATE},
        "min_time_s": args.min_time,
        "timer": "triton.testing.do_bench" if device_type == "cuda" else
                 "torch.utils.benchmark.Timer.blocked_autorange",
        "isolation": "subprocess per case" if args.isolate else "in-process",
        "auto_backend": auto_backends(size, device_type),
        "definitions": {
            "gflop": "folded FLOPs: B*K*(L+1)*N_out per bank and folded product; "
                     "forward+backward counts 3 products, forward and eval-forward 1",
            "speedup_vs_<baseline>": "median_ms(baseline) / median_ms(impl), same workload/mode/L",
            "mem_ratio_vs_naive_fp32": "peak_mem_mb(impl) / peak_mem_mb(naive-fp32); < 1 is leaner",
            "peak_mem_mb": "CUDA: allocator peak minus allocated before the calls; CPU: RSS "
                           "high-water mark minus RSS before the calls, over two calls after "
                           "warm-up, in a fresh subprocess per case (null in-process)",
            "warmup_peak_mem_mb": "CPU: the same over the warm-up calls (includes compilation)",
        },
    }


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m bench``."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), help="default: paper with CUDA, else small")
    p.add_argument("--batch", type=int, help="override the size's batch B")
    p.add_argument("--lengths", type=csv_list(int), help="override the filter lengths, e.g. 251,501")
    p.add_argument("--workloads", type=csv_list(), default=["W1", "W2"], help="default: W1,W2")
    p.add_argument("--modes", type=csv_list(), default=list(ALL_MODES),
                   help="subset of forward,forward+backward,eval-forward (W2 has no 'forward')")
    p.add_argument("--impls", type=csv_list(), help="explicit implementations, e.g. naive-fp32,sincfb-reference")
    p.add_argument("--backends", type=csv_list(),
                   help="sincfb backends to compare (default: all available on the device)")
    p.add_argument("--no-compile", action="store_true",
                   help="skip the torch.compile baselines (naive-bf16-compile, naive-fp32-compile)")
    p.add_argument("--peers", action="store_true",
                   help="also time the installed peers (bench/peers.py; pip install -e '.[peers]')")
    p.add_argument("--in-process", action="store_true",
                   help="no subprocess per case (faster; CPU peak memory is then not reported)")
    p.add_argument("--min-time", type=float, help="seconds of timed runs per case "
                   f"(default {DEFAULT_MIN_TIME}; {CPU_MIN_TIME['tiny']} for tiny)")
    add_run_arguments(p, "results JSON (default bench/results/<device>-<size>-<date>.json)")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse and complete the arguments (defaults that depend on the device)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cuda = torch.device(args.device).type == "cuda"
    args.size = args.size or ("paper" if cuda else "small")
    args.min_time = args.min_time or CPU_MIN_TIME.get(args.size, DEFAULT_MIN_TIME)
    args.isolate = not (args.in_process or cuda)   # one process is fine on CUDA
    for name, allowed in (("workloads", MODES), ("modes", ALL_MODES)):
        bad = set(getattr(args, name)) - set(allowed)
        if bad:
            parser.error(f"unknown {name}: {sorted(bad)}; choose from {list(allowed)}")
    return args


def resolve_size(args) -> Size:
    """The named size with the --batch and --lengths overrides applied."""
    size = SIZES[args.size]
    return Size(args.batch or size.batch, size.samples, size.filters,
                tuple(args.lengths or size.lengths), size.bins)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark, write the JSON, print the markdown table; return the exit status."""
    from bench import report
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    size = resolve_size(args)
    meta = collect_meta(args, size, args.device, argv)
    specs = plan_cases(args, size, args.device)
    if not specs:
        print("nothing to run: no case matches the workloads, modes and implementations",
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = run_cases(specs, args.quiet)
    meta["total_wall_s"] = time.perf_counter() - start
    meta["loadavg_end"] = load_average()
    meta["auto_measured"] = measured_auto_choices(args.device)
    add_ratios(rows)
    results = {"meta": meta, "rows": rows}
    out = args.out or results_path(meta)
    write_json_atomic(out, results)
    print(report.render_markdown(results))
    print(f"wrote {out}", file=sys.stderr)
    return 0
