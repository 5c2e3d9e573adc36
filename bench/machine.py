"""What CPU a benchmark ran on, and which code paths it took there.

Ratios measured on one CPU kind do not carry over to another (AVX2-only AMD Zen 3, AVX-512 Zen 4,
Intel with AMX: their BLAS paths differ by 2x and more), so every result file records the CPU
model, ``lscpu``'s flag list, the instruction-set flags that matter to the kernels, and the paths
taken: the level our C++ loops were built for, ATen's vectorisation level and the GEMM route.
"""
from __future__ import annotations

import os
import platform
import subprocess

import torch

from sincfb.backends.calibration import median_seconds

__all__ = ["KEY_FLAGS", "cpu_info", "cpu_kind", "measured_rates"]

# The flags that decide which paths the kernels and torch's libraries can take.
KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
             "avx_vnni", "amx_bf16", "amx_tile", "asimd", "sve")

# Environment switches that force another CPU kind's library paths (recorded when set).
FORCING_VARIABLES = ("SINCFB_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
                     "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")

REPEATS = 7          # timed calls per measured rate, after one warm-up call


def _lscpu() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _blas() -> str:
    config = torch.__config__.show()
    for name in ("MKL", "OpenBLAS", "Accelerate", "ArmPL", "BLIS"):
        if f"BLAS_INFO={name.lower()}" in config or f"BLAS_INFO={name}" in config:
            return name
    if torch.backends.mkl.is_available():
        return "MKL"
    return "unknown"


def cpu_kind(flags: set[str]) -> str:
    """A short name for the CPU kind by its vector extensions: the unit BENCHMARKS.md keeps
    one table per."""
    if {"amx_tile", "avx512f"} <= flags:
        return "avx512+amx"
    if "avx512f" in flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    if "asimd" in flags:
        return "aarch64-neon"
    return "baseline"


def cpu_info() -> dict:
    """The CPU and code-path facts a benchmark row needs to be read correctly."""
    from sincfb import _build

    lscpu = _lscpu()
    flags = set(lscpu.get("Flags", "").split()) or _build._cpu_flags()
    try:
        isa = _build.instruction_set()
    except (RuntimeError, ValueError) as error:
        isa = f"error: {error}"
    return {
        "model": lscpu.get("Model name") or platform.processor() or "unknown CPU",
        "architecture": platform.machine(),
        "kind": cpu_kind(flags),
        "key_flags": {flag: flag in flags for flag in KEY_FLAGS},
        "lscpu_flags": " ".join(sorted(flags)),
        "sincfb_isa": isa,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gemm_route": f"at::mm_out -> {_blas()} (runtime-dispatched)",
        "forcing_environment": {k: os.environ[k] for k in FORCING_VARIABLES if k in os.environ},
    }


def measured_rates() -> dict:
    """What this CPU reaches at the current thread count, to read the achieved GFLOP/s against:
    float32 SGEMM on the shape of the C++ kernels' tiles (160 x 251 by 251 x 1024, the GEMMs the
    direct product is made of) and of a square 1024 GEMM, and the float32 real FFT of 48000
    samples (a clip) counted as 2.5 n log2 n flops."""
    import math

    a, b = torch.randn(160, 251), torch.randn(251, 1024)
    sq = torch.randn(1024, 1024)
    clips = torch.randn(160, 48000)
    tile = median_seconds(lambda: torch.mm(a, b), REPEATS)
    square = median_seconds(lambda: torch.mm(sq, sq), REPEATS)
    fft = median_seconds(lambda: torch.fft.rfft(clips), REPEATS)
    return {"threads": torch.get_num_threads(),
            "sgemm_tile_gflops": 2 * 160 * 251 * 1024 / tile / 1e9,
            "sgemm_1024_gflops": 2 * 1024 ** 3 / square / 1e9,
            "rfft_48000_gflops": 160 * 2.5 * 48000 * math.log2(48000) / fft / 1e9}

