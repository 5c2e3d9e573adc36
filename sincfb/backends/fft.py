"""The 'fft' backend: FFT convolution for long filters (CPU and CUDA).

Forward: one ``rfft`` per clip; per chunk of filters, the filter spectra (``rfft`` of the taps),
one product and one ``irfft`` give the chunk's valid outputs (B, k, N_out), and the chunk goes
through the same epilogue as the other backends (statistics, BatchNorm, ReLU, pooling, mask bits,
per-bin sums). Backward, per chunk: ``dy = c dz + c3 - c4 y`` (``y`` recomputed by FFT in training
mode), one ``rfft`` of ``dy``, and both heavy products in the frequency domain: the filter
gradient ``irfft(sum_b conj(DY) X)`` and the input gradient ``irfft(sum_k DY G)``. The work per
filter is O(N log N) whatever the filter length; memory is bounded by the chunk size, never
(B, K, N) for all K at once.

Two implementations of those steps: plain tensor ops chunked over filters (CUDA, and the CPU
without the C++ extension; :data:`CHUNK_ELEMENTS` bounds a chunk), and on the CPU the C++ kernels
of ``sincfb/csrc/fft_filters.cpp`` (the same steps per group of filters, scheduled dynamically
over threads, see :data:`USE_CPP_KERNELS`). The C++ backward does not recompute ``y``: with
``n_fft`` points, ``y`` on the valid positions is the circular convolution shifted by ``L - 1``
less its ``n_fft - N_out`` outputs off that range, so ``rfft(dy) = rfft(u) - c4 phase X G`` where
``u`` holds ``c dz + c3`` on the valid positions and ``c4`` times those few outputs (one small
direct product) elsewhere; both products that use ``rfft(dy)`` take the second term in closed
form (``sum_b |X_b|^2`` and ``sum_k c4_k G_k^2``). That saves one inverse transform per (clip,
filter) in training.

"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..algebra import bin_weights, bn_backward_coefficients, fast_fft_length
from ..filters import cutoff_parameter_grads, sinc_filters
from ..pooling import (bin_bounds, bin_stats_dtype, pack_mask, packed_mask_width, spread_bins,
                       unpack_mask)
from . import Backend, FilterbankConfig, register_backend
from .common import (CPU_CROSSOVER_LENGTH, compute_dtype, recompute_nonfinite_clips,
                     single_threaded)
from .selftest import SelfTest, compare_with_reference

__all__ = ["fft_forward", "fft_backward", "chunk_filters", "CHUNK_ELEMENTS", "auto_priority_fft"]

# Elements of one (B, k, n_fft) real tensor per chunk of filters: bounds the backend's memory.
CHUNK_ELEMENTS = 1 << 21


def auto_priority_fft(device_type: str, kernel_size: int):
    """'fft' backend: first choice on the CPU from the crossover on; on CUDA after 'triton' (about
    10) and before 'reference' (100)."""
    if device_type == "cpu":
        return 10.0 if kernel_size >= CPU_CROSSOVER_LENGTH else None
    if device_type == "cuda":
        return 50.0
    return None


def chunk_filters(batch: int, n_fft: int, filters: int) -> int:
    """Filters per chunk so one (B, k, n_fft) tensor holds at most :data:`CHUNK_ELEMENTS`."""
    return max(1, min(filters, CHUNK_ELEMENTS // max(batch * n_fft, 1)))


# On the CPU, when the C++ extension loads, the per-filter work runs in C++ (fft_filters.cpp): one
# work item per filter, handed out dynamically, its FFTs on the worker's thread. The tensor-op
# path below (what CUDA runs) issues a few hundred short parallel operations per pass, and each
# waits for every thread: 20x slower on a 2-core machine where another process holds a core.
# Tests switch this off to check the tensor-op path on the CPU.
USE_CPP_KERNELS = True


def _cpu_kernels(device: torch.device):
    """``torch.ops.sincfb_cpu`` for CPU tensors when the C++ kernels load and pass their
    self-test, else None (the tensor-op path)."""
    from .. import _build
    if (device.type == "cpu" and USE_CPP_KERNELS and _build.load_cpu_extension()
            and CPP_SELF_TEST.passed()):
        return torch.ops.sincfb_cpu
    return None


CPP_SELF_TEST = SelfTest("the C++ kernels of the 'fft' backend",
                         lambda: compare_with_reference(fft_forward, fft_backward),
                         "the 'fft' backend uses its tensor-op path on the CPU instead")


class _Setup:
    """What forward and backward share: the signal, its spectrum, the taps, sizes and chunks."""

    def __init__(self, x, low_hz_, band_hz_, cfg: FilterbankConfig):
        self.dtype = compute_dtype(x.dtype)
        self.signal = x[:, 0].to(self.dtype)
        self.batch, self.n = self.signal.shape
        self.L = cfg.kernel_size
        self.n_out = self.n - self.L + 1
        self.n_fft = fast_fft_length(self.n)   # >= N: the valid outputs never wrap around
        with single_threaded():
            self.spectrum = torch.fft.rfft(self.signal, n=self.n_fft)
            self.filters = sinc_filters(low_hz_, band_hz_, self.L, cfg.sample_rate,
                                        cfg.min_low_hz, cfg.min_band_hz,
                                        dtype=torch.float64).detach()
        self.K = self.filters.shape[0]
        step = chunk_filters(self.batch, self.n_fft, self.K)
        self.chunks = [(k0, min(k0 + step, self.K)) for k0 in range(0, self.K, step)]

    def filter_spectra(self, k0: int, k1: int) -> torch.Tensor:
        """rfft of the zero-padded taps of filters [k0, k1): (k, n_fft/2 + 1)."""
        return torch.fft.rfft(self.filters[k0:k1].to(self.dtype), n=self.n_fft)

    def outputs(self, spectra: torch.Tensor) -> torch.Tensor:
        """Valid products y (B, k, N_out): the full convolution's samples L-1..N-1 (g is
        symmetric, so convolution and correlation agree)."""
        full = torch.fft.irfft(self.spectrum[:, None] * spectra[None], n=self.n_fft)
        return full[..., self.L - 1: self.n]


def _bin_sums(values: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Sum over each pooling bin with the native adaptive pooling kernel (mean times size)."""
    return F.adaptive_avg_pool1d(values, sizes.shape[0]) * sizes


def _batch_statistics(y: torch.Tensor):
    """Mean and biased variance over (batch, positions) of y (B, k, N_out), float64 (k,): two
    passes of last-dimension sums (``var_mean`` over (0, 2) is ~50x slower on the CPU). Rows are
    summed in y's dtype (torch sums floats pairwise) and the B row sums in float64."""
    count = y.shape[0] * y.shape[-1]
    mean = y.sum(-1).double().sum(0) / count
    centred = y - mean.to(y.dtype)[:, None]
    return mean, centred.square_().sum(-1).double().sum(0) / count


def _epilogue(y, mean, var, gamma, beta, eps, sizes):
    """BatchNorm, ReLU, pooling, per-bin (count, sum of zhat) and the mask of one chunk.

    Float masks instead of boolean ``where``: the same values, several times faster on the CPU.
    NaN as in the composite (:func:`sincfb.pooling.relu_mask`): ``relu_`` keeps it and it counts
    as positive (``ceil`` takes (0, inf] to >= 1 and NaN, which ``sign`` would make 0, stays NaN
    for ``nan_to_num_``); ``zhat * 0`` off the mask keeps a non-finite zhat in the bin sums
    (:func:`sincfb.pooling.masked_zhat`)."""
    rstd = torch.rsqrt(var.to(y.dtype) + eps)[:, None]
    zhat = torch.addcmul(-mean.to(y.dtype)[:, None] * rstd, y, rstd)
    active = torch.addcmul(beta[:, None], zhat, gamma[:, None]).relu_()
    positive = active.ceil().clamp_(max=1).nan_to_num_(1.0)
    pooled = _bin_sums(active, sizes) / sizes
    counts = _bin_sums(positive, sizes).round_()
    normalised = _bin_sums(zhat.mul_(positive), sizes)
    return pooled, counts, normalised, pack_mask(positive > 0)


def _given_statistics(running_mean, running_var, K, dtype, training):
    """The statistics given to the C++ forward: ignored in training (it computes them)."""
    if training:
        return torch.zeros(K, dtype=dtype), torch.ones(K, dtype=dtype)
    return running_mean, running_var


def _cpu_forward(ops, s: _Setup, weight, bias, running_mean, running_var, cfg: FilterbankConfig):
    """The C++ kernels, a group of filters per work item (CPU)."""
    mean_in, var_in = _given_statistics(running_mean, running_var, s.K, weight.dtype,
                                         cfg.training)
    out, mask_bits, bin_stats, mean, var = ops.fft_filterbank_forward(
        s.spectrum, s.filters.to(s.dtype), s.n, s.n_fft, mean_in, var_in, weight.detach(),
        bias.detach(), cfg.eps, cfg.pool_bins, cfg.training, cfg.keep_saved)
    if cfg.training:
        return out, mean.to(weight.dtype), var.to(weight.dtype), mask_bits, bin_stats
    return out, running_mean.clone(), running_var.clone(), mask_bits, bin_stats


def _chunked_forward(s: _Setup, weight, bias, running_mean, running_var, cfg: FilterbankConfig):
    """Tensor ops, chunk by chunk of filters (CUDA, and the CPU without the C++ extension)."""
    P = cfg.pool_bins
    starts, ends = bin_bounds(s.n_out, P, s.signal.device)
    sizes = (ends - starts).to(s.dtype)
    out = s.signal.new_empty(s.batch, s.K, P)
    mask_bits = s.signal.new_empty(s.batch, s.K, packed_mask_width(s.n_out), dtype=torch.uint8)
    bin_stats = s.signal.new_empty(2, s.batch, s.K, P)
    mean = weight.new_empty(s.K) if cfg.training else running_mean.clone()
    var = weight.new_empty(s.K) if cfg.training else running_var.clone()
    gamma, beta = weight.detach().to(s.dtype), bias.detach().to(s.dtype)
    for k0, k1 in s.chunks:
        y = s.outputs(s.filter_spectra(k0, k1))
        if cfg.training:
            mean[k0:k1], var[k0:k1] = _batch_statistics(y)
        (out[:, k0:k1], bin_stats[0, :, k0:k1], bin_stats[1, :, k0:k1],
         mask_bits[:, k0:k1]) = _epilogue(y, mean[k0:k1], var[k0:k1], gamma[k0:k1], beta[k0:k1],
                                          cfg.eps, sizes)
    return out, mean, var, mask_bits, bin_stats


def fft_forward(x, low_hz_, band_hz_, weight, bias, running_mean, running_var,
                cfg: FilterbankConfig):
    """Forward of the fused op by FFT convolution; see ``sincfb.backends`` for the contract."""
    s = _Setup(x, low_hz_, band_hz_, cfg)
    ops = _cpu_kernels(x.device)
    forward = (lambda *a: _cpu_forward(ops, *a)) if ops else _chunked_forward
    out, mean, var, mask_bits, bin_stats = forward(s, weight, bias, running_mean, running_var,
                                                   cfg)
    # the FFT spreads a non-finite sample over its whole clip
    recompute_nonfinite_clips(out, mask_bits, bin_stats, s.signal[:, None], low_hz_, band_hz_,
                              weight, bias, running_mean, running_var, cfg)
    return (out.to(x.dtype), mean, var, mask_bits,
            bin_stats.to(bin_stats_dtype(x.dtype)))


def _chunked_backward(s: _Setup, w, mask_bits, coefficients, training, need_filters=True,
                      need_input=True):
    """Both heavy products by FFT with tensor ops, chunk by chunk: (grad_filters, grad_x), each
    None when not needed."""
    c, c3, c4 = (v.to(s.dtype)[:, None] for v in coefficients)
    grad_filters = torch.empty(s.K, s.L, dtype=s.dtype, device=w.device)
    grad_spectrum = torch.zeros_like(s.spectrum)
    for k0, k1 in s.chunks:
        spectra = s.filter_spectra(k0, k1)
        # dz = mask * (bin weights spread over their bins): a multiply is faster than a select
        dy = spread_bins(w[:, k0:k1], s.n_out).mul_(unpack_mask(mask_bits[:, k0:k1], s.n_out))
        dy.mul_(c[k0:k1])
        if training:   # the batch statistics depend on y: dy = c dz + c3 - c4 y
            dy.addcmul_(s.outputs(spectra), -c4[k0:k1]).add_(c3[k0:k1])
        dy_spectrum = torch.fft.rfft(dy, n=s.n_fft)
        del dy
        if need_filters:     # summed over the batch before the inverse transform
            correlation = (dy_spectrum.conj() * s.spectrum[:, None]).sum(0)
            grad_filters[k0:k1] = torch.fft.irfft(correlation, n=s.n_fft)[:, : s.L]
        if need_input:
            grad_spectrum += (dy_spectrum * spectra[None]).sum(1)
    grad_x = torch.fft.irfft(grad_spectrum, n=s.n_fft)[:, : s.n] if need_input else None
    return (grad_filters if need_filters else None), grad_x


def fft_backward(grad_out, x, low_hz_, band_hz_, weight, bias, mean, var, mask_bits, bin_stats,
                 cfg: FilterbankConfig, need_input: bool = True, need_filters: bool = True):
    """Gradients of (x, low_hz_, band_hz_, weight, bias), both heavy products by FFT;
    ``need_input`` / ``need_filters`` False skip that product (the gradient is None)."""
    s = _Setup(x, low_hz_, band_hz_, cfg)
    with single_threaded():
        w = bin_weights(grad_out.to(s.dtype), s.n_out)
        c, c3, c4, dgamma, dbeta = bn_backward_coefficients(
            w, bin_stats, weight.detach(), mean, var, cfg.eps, s.batch * s.n_out, cfg.training)
    grad_filters = grad_x = grad_low = grad_band = None
    ops = _cpu_kernels(x.device)
    if ops and (need_input or need_filters):
        grad_filters, grad_x = ops.fft_filterbank_backward(
            s.signal.contiguous(), s.spectrum, s.filters.to(s.dtype), s.n_fft, w, mask_bits, c,
            c3, c4,
            cfg.training, need_filters, need_input)
    elif need_input or need_filters:
        grad_filters, grad_x = _chunked_backward(s, w, mask_bits, (c, c3, c4), cfg.training,
                                                 need_filters, need_input)
    if need_filters:
        with single_threaded():
            grad_low, grad_band = cutoff_parameter_grads(
                grad_filters, low_hz_, band_hz_, s.L, cfg.sample_rate, cfg.min_low_hz,
                cfg.min_band_hz)
    return (grad_x[:, None].to(x.dtype) if need_input else None, grad_low, grad_band,
            dgamma.to(weight.dtype), dbeta.to(bias.dtype))


register_backend(Backend(
    name="fft", forward=fft_forward, backward=fft_backward, devices=("cpu", "cuda"),
    auto_priority=auto_priority_fft,
    timed_on=("cpu", "cuda"),
    summary="FFT convolution chunked over filters (torch.fft; CPU and CUDA); cost per filter "
            "independent of the filter length"))
