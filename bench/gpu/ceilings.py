"""Measured ceilings of the GPU (METHOD.md: measure them once, do not trust datasheets).

bf16 and tf32 dense matmul rates (cuBLAS through torch.matmul, random data, a size that fills the
chip) and device-to-device copy bandwidth (bytes read + written), each the median of
``triton.testing.do_bench``. Writes JSON::

    python -m bench.gpu.ceilings --out ceilings.json
"""
from __future__ import annotations

import argparse
import json
import sys

import torch


def matmul_tflops(dtype, n: int = 8192, tf32: bool = False) -> float:
    from triton.testing import do_bench
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        ms = do_bench(lambda: torch.matmul(a, b), warmup=100, rep=500, return_mode="median")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def copy_gbps(gib: int = 2) -> float:
    from triton.testing import do_bench
    src = torch.randn(gib * 2 ** 28, device="cuda")          # gib GiB of float32
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=300, return_mode="median")
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "bf16_matmul_tflops": matmul_tflops(torch.bfloat16),
        "tf32_matmul_tflops": matmul_tflops(torch.float32, tf32=True),
        "fp32_matmul_tflops": matmul_tflops(torch.float32, n=4096),
        "copy_gbps_read_plus_write": copy_gbps(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
