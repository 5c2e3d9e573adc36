"""What several backends share that is not DESIGN §3 algebra (that is :mod:`sincfb.algebra`):
the dtype they compute in, CPU thread scheduling, the CPU crossover that ``backend='auto'`` uses,
and the direct recomputation of eval-mode clips with non-finite samples. No backend imports
another; they meet here and in the registry (``sincfb.backends``).
"""
from __future__ import annotations

import contextlib

import torch

from . import FilterbankConfig, get_backend

__all__ = ["compute_dtype", "single_threaded", "CPU_CROSSOVER_LENGTH",
           "recompute_nonfinite_clips"]

# Filter length from which FFT convolution beats the C++ direct product on the CPU: training-mode
# forward+backward, B=4, N=48000, K=160, on a 2-core AMD EPYC (AVX-512), measured by
# bench/crossover.py (bench/results/crossover-cpu-*.json): equal times near L=500 with 2 threads on
# an idle machine and near 470 with 1 thread; 'fft' is faster at every measured L >= 601.
CPU_CROSSOVER_LENGTH = 601


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the CPU backends compute in: float64 stays float64; float32, half and bfloat16
    compute in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@contextlib.contextmanager
def single_threaded():
    """Run the enclosed torch operations on the calling thread only (restored on exit).

    The backends' bookkeeping (filter taps and their derivatives, BatchNorm coefficients, K x L
    and B x N float64 terms) is dozens of small operations. Each one that torch runs in parallel
    opens an OpenMP region that waits for every thread; when another process holds one of the
    cores that wait is a scheduler time slice, and on a busy 2-core machine it made these few
    milliseconds of work take hundreds. The heavy kernels run outside this context, in parallel.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def recompute_nonfinite_clips(out, mask_bits, bin_stats, x, low_hz_, band_hz_, weight, bias,
                              running_mean, running_var, cfg: FilterbankConfig) -> None:
    """Eval mode: redo, one at a time with the direct composite, the clips of ``x`` that hold a NaN
    or Inf sample, overwriting their rows of ``out``, ``mask_bits`` and ``bin_stats``.

    A non-finite sample makes only the bins whose windows reach it non-finite. An FFT spreads it
    over the whole clip, and pooling by a 0/1 matrix product (Triton) over every bin the product
    covers (0 * NaN is NaN), so those backends hand such clips here. Training mode needs nothing:
    there the sample makes every batch statistic and so every output NaN, whatever the backend.
    Costs one host-device synchronisation (which clips?) per eval call."""
    if cfg.training:
        return
    bad = ~torch.isfinite(x).flatten(1).all(1)
    for b in bad.nonzero().flatten().tolist():
        clip = get_backend("reference").forward(x[b:b + 1], low_hz_, band_hz_, weight, bias,
                                                running_mean, running_var, cfg)
        out[b] = clip[0][0]
        if mask_bits.shape[-1]:   # empty when the backend kept no saved data (keep_saved)
            mask_bits[b], bin_stats[:, b] = clip[3][0], clip[4][:, 0]
