"""Compile the Triton kernels of the 'triton' backend for Hopper (sm_90) and Ampere (sm_80) without
a GPU.

Runs on any machine with the triton wheel (it ships ptxas): catches compile errors in the bf16 and
tf32 paths the CPU interpreter cannot run, and reports what costs no device time (METHOD.md): per
tile configuration the registers, spill stores/loads and stack frame (``ptxas -v`` of Triton's
bundled ptxas), the shared memory Triton allocates and whether it fits the architecture, and which
MMA instruction the dots became. Each kernel is specialised exactly as a real launch at the
paper's sizes would be: the launchers themselves run on 'meta' tensors
(:func:`sincfb.backends.triton_kernels.captured_launches`) and
:func:`~sincfb.backends.triton_kernels.specialisation` applies Triton's own rule to their
arguments (types, divisibility by 16, integers equal to 1). Usage::

    python -m bench.gpu.compile_check [--arch 90,80] [--configs all|first] [--json FILE]
    python -m bench.gpu.compile_check --markdown FILE     # the JSON as BENCHMARKS.md's table
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)     # compile for real, never interpret
os.environ["TRITON_ALWAYS_COMPILE"] = "1"    # a cached kernel would skip ptxas and its report
os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"    # Triton prints ptxas -v's report

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from sincfb.backends import triton as tb  # noqa: E402
from sincfb.backends import triton_kernels as tk  # noqa: E402

# the paper's bank: B = 32, K = 160 (128 + 32), L = 1001, P = 1024, N = 48000. L = 251 and 501
# give the same specialisation (C, N_out, W and L are not multiples of 16 at any of the three;
# BP = BPB = 16 at all three)
PAPER = dict(batch=32, channels=160, samples=48000, kernel_size=1001, bins=1024)
# opt-in shared memory per block (CUDA programming guide, compute capabilities table)
SHARED_LIMIT = {90: 232448, 80: 166912}


def paper_launches(precision: str, input_dtype=torch.float32, **sizes):
    """The four launches (taps, forward, filter correlation, transposed product) of one forward
    and backward in ``precision``, as :class:`sincfb.backends.triton_kernels.Launch` records."""
    size = {**PAPER, **sizes}
    B, K, N, L, P = (size[k] for k in ("batch", "channels", "samples", "kernel_size", "bins"))
    lay = tk.Layout(B, K, N, L, P)
    meta = dict(device="meta")
    with tk.captured_launches() as launches:
        low = torch.empty(K, **meta)
        taps = tk.filter_taps(low, torch.empty_like(low), L, 16000.0, 50.0, 50.0)
        x_pad = tb._padded_input(torch.empty(B, 1, N, dtype=input_dtype, **meta), lay)
        vector = tb._pad_vector(low, lay)
        scaled = tb._pack_taps(taps, torch.empty(K, dtype=torch.float64, **meta), lay, precision)
        _, mask_bits, _ = tk.forward_product(x_pad, scaled, vector, vector, vector, lay, precision,
                                             input_dtype, torch.float32, poison=False)
        weights = torch.empty(B, K, P, **meta)
        tk.filter_correlation(x_pad, weights, mask_bits, lay, precision, poison=False)
        tk.transposed_product(tb._pack_taps(taps, None, lay, precision), weights, mask_bits, lay,
                              precision, poison=False)
    return dict(zip(("taps", "fwd", "corr", "dx"), launches))


def ptxas_report(log: str) -> dict:
    """Registers, stack frame and spill bytes from ``ptxas -v``'s report of one kernel."""
    usage = {}
    for key, pattern in (("registers", r"Used (\d+) registers"),
                         ("stack_bytes", r"(\d+) bytes stack frame"),
                         ("spill_store_bytes", r"(\d+) bytes spill stores"),
                         ("spill_load_bytes", r"(\d+) bytes spill loads")):
        match = re.search(pattern, log)
        usage[key] = int(match.group(1)) if match else None
    return usage


def mma_instruction(ptx: str) -> str:
    """Which matrix instructions the dots became: wgmma (Hopper), mma.sync (Ampere's, and
    Hopper's for products with M < 64), both, or none (FMA)."""
    kinds = [name for name, needle in (("wgmma", "wgmma.mma_async"), ("mma.sync", "mma.sync"))
             if needle in ptx]
    return "+".join(kinds) or "fma"


def compile_config(launch, config, arch: int) -> dict:
    """Compile one launch with one tile configuration for sm_<arch>; its resource row."""
    signature, constexprs, attrs = tk.specialisation(launch.kernel, launch.args,
                                                     {**launch.meta, **config.kwargs})
    source = ASTSource(fn=launch.kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                  options={"num_warps": config.num_warps,
                                           "num_stages": config.num_stages})
    ptx = compiled.asm["ptx"]
    row = ptxas_report(log.getvalue())
    row.update(shared_bytes=compiled.metadata.shared, mma=mma_instruction(ptx),
               wgmma=ptx.count("wgmma.mma_async"), mma_sync=ptx.count("mma.sync"),
               divisible_args=sorted(signature_name(launch.kernel, k) for k in attrs))
    row["fits_shared"] = row["shared_bytes"] <= SHARED_LIMIT[arch]
    return row


def signature_name(kernel, path) -> str:
    return kernel.arg_names[path[0]]


def table(archs, precisions, which: str, echo=print):
    """One row per (arch, precision, kernel, tile configuration); compile errors are rows too."""
    rows = []
    for arch in archs:
        for precision in precisions:
            for name, launch in paper_launches(precision).items():
                if name == "taps" and precision != precisions[0]:
                    continue                      # the taps kernel has no precision
                for config in launch.configs[:1] if which == "first" else launch.configs:
                    row = {"arch": f"sm_{arch}", "kernel": name,
                           "precision": "-" if name == "taps" else precision,
                           "config": dict(config.kwargs), "num_warps": config.num_warps,
                           "num_stages": config.num_stages,
                           "default": config is launch.configs[0]}
                    start = time.perf_counter()
                    try:
                        row.update(compile_config(launch, config, arch))
                    except Exception as exc:   # noqa: BLE001 -- report every failure, keep going
                        row["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
                    row["compile_s"] = round(time.perf_counter() - start, 1)
                    rows.append(row)
                    echo(format_row(row))
    return rows


def format_row(row) -> str:
    cfg = " ".join(f"{k}={v}" for k, v in row["config"].items())
    head = (f"{row['arch']} {row['kernel']:5s} {row['precision']:5s} {cfg:14s} "
            f"w{row['num_warps']} s{row['num_stages']}")
    if "error" in row:
        return f"{head} ERROR {row['error'][:300]}"
    return (f"{head} regs={row['registers']} spill={row['spill_store_bytes']}/"
            f"{row['spill_load_bytes']} stack={row['stack_bytes']} smem={row['shared_bytes']}"
            f"{'' if row['fits_shared'] else ' (OVER LIMIT)'} {row['mma']} "
            f"({row['compile_s']} s)")


def markdown(rows) -> str:
    """The rows as a Markdown table (BENCHMARKS.md), one line per target, kernel and config."""
    lines = ["| target | kernel | precision | tile | warps | stages | registers | spill st/ld B "
             "| shared B | MMA |", "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        tile = " ".join(f"{k}={v}" for k, v in r["config"].items()) + (" *" if r["default"] else "")
        over = "" if r["fits_shared"] else " **over**"
        lines.append(f"| {r['arch']} | {r['kernel']} | {r['precision']} | {tile} | "
                     f"{r['num_warps']} | {r['num_stages']} | {r['registers']} | "
                     f"{r['spill_store_bytes']}/{r['spill_load_bytes']} | "
                     f"{r['shared_bytes']}{over} | {r['mma']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90,80", help="compute capabilities, e.g. 90,80")
    parser.add_argument("--configs", choices=("all", "first"), default="all")
    parser.add_argument("--precisions", default="bf16,tf32,ieee")
    parser.add_argument("--json", help="write the table as JSON here")
    parser.add_argument("--markdown", metavar="JSON",
                        help="print a table written by --json as Markdown; compile nothing")
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)["rows"]), end="")
        return 0
    archs = [int(a) for a in args.arch.split(",")]
    start = time.perf_counter()
    rows = table(archs, args.precisions.split(","), args.configs,
                 echo=lambda line: print(line, flush=True))
    print(f"{len(rows)} compiles in {time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sizes": PAPER, "triton": triton.__version__,
                       "shared_limit": {f"sm_{a}": SHARED_LIMIT[a] for a in archs},
                       "rows": rows}, f, indent=2)
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
