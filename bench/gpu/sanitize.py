"""One small forward and backward of the 'triton' backend per precision: the workload that
bench/gpu_check.sh runs under ``compute-sanitizer`` (memcheck, racecheck) before anything else.

Every kernel runs (taps, forward, filter correlation, transposed product) with the configuration
used when autotuning is off (one compile each, no autotuning under the sanitizer), the paper's
filter split (K = 160 as 128 + 32) and a ragged length, outputs NaN-poisoned before each launch;
the script fails when any output or gradient is not finite. Without a GPU it runs the same under
Triton's interpreter (set TRITON_INTERPRET=1; keep --samples small). Usage::

    python -m bench.gpu.sanitize [--samples 4000] [--precisions bf16,tf32,ieee]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ["SINCFB_AUTOTUNE"] = "0"
os.environ["SINCFB_TRITON_POISON"] = "1"

import torch  # noqa: E402

from sincfb import FusedSincFilterbank  # noqa: E402


def run(precision: str, samples: int, device: str) -> list[str]:
    """Names of the results that are not finite after one training step in ``precision``."""
    torch.manual_seed(0)
    bank = FusedSincFilterbank(160, 251, pool_bins=64, backend="triton", precision=precision)
    bank = bank.to(device)
    x = torch.randn(2, 1, samples, device=device, requires_grad=True)
    out = bank(x)
    out.square().sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    results = {"output": out, "grad x": x.grad, "grad low_hz_": bank.sinc.low_hz_.grad,
               "grad band_hz_": bank.sinc.band_hz_.grad,
               "running_var": bank.batch_norm.running_var}
    return [name for name, t in results.items() if not bool(torch.isfinite(t).all())]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4001, help="N (N_out = N - 250, ragged)")
    parser.add_argument("--precisions", default="bf16,tf32,ieee")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    failed = False
    for precision in args.precisions.split(","):
        bad = run(precision, args.samples, device)
        print(f"{precision}: {'not finite: ' + ', '.join(bad) if bad else 'finite'}", flush=True)
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
