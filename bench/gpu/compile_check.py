"""Compile the Triton kernels of the 'triton' backend for Hopper (sm_90) without a GPU.

Runs on any machine with the triton wheel (it ships ptxas): catches compile errors in the bf16 and
tf32 paths the CPU interpreter cannot run, and reports what costs no device time (METHOD.md):
registers, spills, shared memory, and whether the dots became wgmma. Usage::

    python -m bench.gpu.compile_check [--arch 90] [--configs all|first] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.pop("TRITON_INTERPRET", None)     # compile for real, never interpret

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from sincfb.backends import triton_kernels as tk  # noqa: E402

# the paper's bank: K = 160 (128 + 32), L = 1001, P = 1024, N = 48000
LAYOUT = tk.Layout(32, 160, 48000, 1001, 1024)


def _signature(kernel, pointer_types, constexprs):
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        else:
            sig[name] = pointer_types.get(name, "i32")
    return sig


def kernel_specs(precision: str, which: str):
    """(name, kernel, pointer types, constexprs, config) for every kernel and tile config."""
    lay = LAYOUT
    prec = tk.PREC_CODE[precision]
    tap_type = "*bf16" if precision == "bf16" else "*fp32"
    common = dict(KA=lay.KA, KB=lay.KB, HAS_KB=lay.has_kb, PREC=prec, INTERP=False)
    ieee = precision == "ieee"

    def pick(configs, ieee_configs):
        chosen = ieee_configs if ieee else configs
        return chosen[:1] if which == "first" else chosen

    for config in pick(tk.FWD_CONFIGS, tk.FWD_IEEE_CONFIGS):
        yield ("fwd", tk._fwd_kernel,
               dict(x_ptr="*fp32", h_ptr=tap_type, off_ptr="*fp32", gam_ptr="*fp32",
                    bet_ptr="*fp32", out_ptr="*fp32", cnt_ptr="*fp32", sum_ptr="*fp32",
                    mask_ptr="*u8"),
               dict(common, BP=lay.BP, **config.kwargs), config)
    for config in pick(tk.CORR_CONFIGS, tk.CORR_IEEE_CONFIGS):
        yield ("corr", tk._corr_kernel,
               dict(x_ptr="*fp32", wc_ptr="*fp32", mask_ptr="*u8", part_ptr="*fp32"),
               dict(common, BPB=lay.BPB, **config.kwargs), config)
    for config in pick(tk.DX_CONFIGS, tk.DX_IEEE_CONFIGS):
        yield ("dx", tk._dx_kernel,
               dict(h_ptr=tap_type, wc_ptr="*fp32", mask_ptr="*u8", part_ptr="*fp32",
                    scratch_ptr="*fp32"),
               dict(common, BPB=lay.BPB, OFF=tk.DX_OFF, SJ=tk.DX_SKEW_COLUMNS, **config.kwargs),
               config)
    yield ("taps", tk._taps_kernel,
           dict(low_ptr="*fp32", band_ptr="*fp32", consts_ptr="*fp64", h_ptr="*fp32"),
           dict(BK=16, BJ=64), triton.Config({}, num_warps=4, num_stages=1))


def resource_usage(cubin: bytes, arch: int) -> dict:
    """Registers, spill bytes and stack frame from ``cuobjdump --dump-resource-usage``."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                              text=True, check=False).stdout
    usage = {}
    for key, pattern in (("registers", r"REG:(\d+)"), ("stack", r"STACK:(\d+)"),
                         ("shared", r"SHARED:(\d+)"), ("local", r"LOCAL:(\d+)")):
        match = re.search(pattern, text)
        usage[key] = int(match.group(1)) if match else None
    return usage


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--configs", choices=("all", "first"), default="all")
    parser.add_argument("--precisions", default="bf16,tf32,ieee")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args(argv)
    target = GPUTarget("cuda", args.arch, 32)
    rows, failed = [], 0
    for precision in args.precisions.split(","):
        for name, kernel, pointers, constexprs, config in kernel_specs(precision, args.configs):
            start = time.perf_counter()
            row = {"kernel": name, "precision": precision, "config": dict(config.kwargs),
                   "num_warps": config.num_warps, "num_stages": config.num_stages}
            try:
                src = ASTSource(fn=kernel, signature=_signature(kernel, pointers, constexprs),
                                constexprs=constexprs)
                compiled = triton.compile(src, target=target,
                                          options={"num_warps": config.num_warps,
                                                   "num_stages": config.num_stages})
                ptx = compiled.asm["ptx"]
                row.update(resource_usage(compiled.asm["cubin"], args.arch))
                row["wgmma"] = ptx.count("wgmma.mma_async")
                row["mma_sync"] = ptx.count("mma.sync")
                row["shared_bytes"] = compiled.metadata.shared
            except Exception as exc:   # noqa: BLE001 -- report every failure, keep going
                failed += 1
                row["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
            row["compile_s"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            cfg = " ".join(f"{k}={v}" for k, v in config.kwargs.items())
            if "error" in row:
                print(f"{name:5s} {precision:5s} {cfg:16s} ERROR {row['error'][:300]}", flush=True)
            else:
                print(f"{name:5s} {precision:5s} {cfg:16s} w{config.num_warps} "
                      f"s{config.num_stages} regs={row['registers']} stack={row['stack']} "
                      f"smem={row['shared_bytes']} wgmma={row['wgmma']} "
                      f"mma.sync={row['mma_sync']} ({row['compile_s']} s)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
