"""The 'cpu' backend: DESIGN.md §3 with C++ kernels for the heavy products (``sincfb/csrc``).

Forward: batch statistics from ``s`` and the second moment ``g^T A g`` (training), then one fused
C++ pass over tiles of output positions: folded product (a GEMM per tile), BatchNorm, ReLU, pooled
sums, mask bits, per-bin (count, sum of zhat). Backward: one fused C++ pass forms ``dz`` per tile
from the mask bits and the bin weights and feeds both heavy products (the filter-gradient
correlation and the input-gradient transposed product); the cheap terms (``s``, ``A g``, the
tap-sum term and the ``R`` filter with its exact edge corrections) are done here in float64.

``A`` itself (L x L) is never formed. With ``r`` the autocorrelation of x (summed over the batch)
and ``y_pad`` the product over x zero-padded on both sides, the valid outputs are all outputs minus
the ``L - 1`` partial ones at each end, so

    g^T A g = g . (Toeplitz(r) g) - sum(head^2) - sum(tail^2)
    A g     = Toeplitz(r) g - corr(head, x's first samples) - corr(tail, x's last samples)

where ``Toeplitz(r) g`` is an FFT convolution and the head/tail outputs (B, K, L-1) come from the
same C++ products run on the 2L-2 samples at each end: O(N log N + K L^2) per clip instead of a
(L x L) Gram matrix. Filter taps are generated in float64 (``sincfb.filters``) and folded:
``g[l] + g[L-1-l]`` pairs share one multiply, and the filter gradient is only needed folded.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _build
from ..algebra import (autocorrelation_sums, bin_weights, bn_backward_coefficients,
                       convolve_same_length, filter_autocorrelations, fold_taps, tap_sums,
                       toeplitz_product, unfold_gradient, window_sums)
from ..filters import cutoff_parameter_grads, sinc_filters
from ..pooling import bin_stats_dtype, packed_mask_width
from . import Backend, FilterbankConfig, register_backend
from .common import CPU_CROSSOVER_LENGTH, compute_dtype, single_threaded
from .selftest import SelfTest, compare_with_reference

__all__ = ["cpu_forward", "cpu_backward", "cpu_backend_ready", "cpu_unavailable_reason", "SELF_TEST",
           "auto_priority_cpu_direct", "edge_signals", "edge_products",
           "training_statistics", "weighted_gram_product", "input_gradient_terms"]


def _ops():
    if not cpu_backend_ready():
        raise RuntimeError(f"the 'cpu' backend is unavailable: {cpu_unavailable_reason()}")
    return torch.ops.sincfb_cpu


def edge_signals(x: torch.Tensor, kernel_size: int):
    """The 2L-2 samples whose valid outputs are the partial products at each end of x zero-padded:
    ``(L-1 zeros, x[:L-1])`` and ``(x[N_out:], L-1 zeros)``. x: (B, N) -> two (B, 2L-2)."""
    L = kernel_size
    n_out = x.shape[-1] - L + 1
    return F.pad(x[:, : L - 1], (L - 1, 0)), F.pad(x[:, n_out:], (0, L - 1))


def edge_products(ops, x, folded, kernel_size):
    """``(head, tail, head_out, tail_out)``: the edge signals of :func:`edge_signals` (B, 2L-2)
    and their valid products with the folded filters by the C++ kernel (B, K, L-1): the outputs
    at n < 0 and n >= N_out of x zero-padded (:func:`sincfb.algebra.padded_edge_outputs`)."""
    head, tail = edge_signals(x, kernel_size)
    return head, tail, ops.fold_correlate(head, folded), ops.fold_correlate(tail, folded)


def training_statistics(ops, x: torch.Tensor, filters: torch.Tensor, folded: torch.Tensor):
    """Batch mean and biased variance (float64, (K,)) of the valid products, without a pass over
    them: ``mu = g.s / M`` and ``E[y^2] = (g^T Toeplitz(r) g - edge outputs squared) / M``."""
    L = filters.shape[-1]
    count = x.shape[0] * (x.shape[-1] - L + 1)
    sums = window_sums(x[:, None], L)
    full = toeplitz_product(filters, autocorrelation_sums(x, L))
    _, _, head_out, tail_out = edge_products(ops, x, folded, L)
    edges = head_out.double().square().sum((0, 2)) + tail_out.double().square().sum((0, 2))
    mean = filters @ sums / count
    second_moment = ((filters * full).sum(-1) - edges) / count
    return mean, (second_moment - mean.square()).clamp_min(0.0)


def weighted_gram_product(ops, x, filters, folded, edges):
    """Folded ``A g_k`` (K, C) float64: ``Toeplitz(r) g`` minus the head and tail outputs
    correlated with the samples they reach (``edges`` from :func:`edge_products`)."""
    head, tail, head_out, tail_out = edges
    full = fold_taps(toeplitz_product(filters, autocorrelation_sums(x, filters.shape[-1])))
    return full - ops.fold_window_correlation(head_out, head) \
        - ops.fold_window_correlation(tail_out, tail)


def input_gradient_terms(ops, x, filters, folded, c3, c4, edges):
    """The cheap part of dx (B, N) float64: ``sum_k c3_k (sum of g_k's valid taps)`` minus
    ``x`` correlated with ``R[d] = sum_k c4_k sum_j g_k[j] g_k[j+d]``, the latter with its first and
    last L-1 samples corrected exactly by the partial products at the ends (DESIGN.md §3.3)."""
    L, n = filters.shape[-1], x.shape[-1]
    n_out = n - L + 1
    lags = (c4[:, None] * filter_autocorrelations(filters)).sum(0)        # R[d], d = 0..L-1
    reach = convolve_same_length(x.double(), torch.cat([lags.flip(0)[:-1], lags]))
    _, _, head_out, tail_out = edges
    weight = c4.to(head_out.dtype)[None, :, None]
    reach[:, : L - 1] -= ops.fold_correlate_transposed(head_out * weight, folded)[:, L - 1:]
    reach[:, n_out:] -= ops.fold_correlate_transposed(tail_out * weight, folded)[:, : L - 1]
    return tap_sums(filters, c3, n_out, n)[None] - reach


def _filters(low_hz_, band_hz_, cfg: FilterbankConfig, dtype):
    filters = sinc_filters(low_hz_, band_hz_, cfg.kernel_size, cfg.sample_rate, cfg.min_low_hz,
                           cfg.min_band_hz, dtype=torch.float64).detach()
    return filters, filters[:, : cfg.kernel_size // 2 + 1].to(dtype).contiguous()


def _saved_outputs(x, channels, n_out, cfg: FilterbankConfig, dtype):
    """Uninitialised (out, mask_bits, bin_stats) for the fused kernel to fill completely."""
    batch = x.shape[0]
    return (x.new_empty(batch, channels, cfg.pool_bins, dtype=dtype),
            x.new_empty(batch, channels, packed_mask_width(n_out), dtype=torch.uint8),
            x.new_empty(2, batch, channels, cfg.pool_bins, dtype=dtype))


def cpu_forward(x, low_hz_, band_hz_, weight, bias, running_mean, running_var,
                cfg: FilterbankConfig):
    """Forward of the fused op with the C++ kernels; see ``sincfb.backends`` for the contract."""
    ops = _ops()
    dtype = compute_dtype(x.dtype)
    with single_threaded():   # small (K x L, B x N) work: see single_threaded
        signal = x[:, 0].to(dtype).contiguous()
        filters, folded = _filters(low_hz_, band_hz_, cfg, dtype)
        if cfg.training:
            mean, var = training_statistics(ops, signal, filters, folded)
            mean, var = mean.to(weight.dtype), var.to(weight.dtype)
        else:
            mean, var = running_mean.clone(), running_var.clone()
        rstd = torch.rsqrt(var.to(dtype) + cfg.eps)
    out, mask_bits, bin_stats = _saved_outputs(x, filters.shape[0],
                                               x.shape[-1] - cfg.kernel_size + 1, cfg, dtype)
    ops.filterbank_forward(signal, folded, mean.to(dtype), rstd, weight.detach().to(dtype),
                           bias.detach().to(dtype), out, mask_bits, bin_stats)
    return (out.to(x.dtype), mean, var, mask_bits,
            bin_stats.to(bin_stats_dtype(x.dtype)))


def _statistics_gradient(ops, signal, filters, folded, grad_folded, grad_x, c3, c4):
    """Training mode: add the terms through the batch statistics (``s``, ``A g``, tap sums, the
    ``R`` filter) to the folded filter gradient and the input gradient (float64); a gradient
    that is None (not needed) stays None."""
    L = filters.shape[-1]
    edges = edge_products(ops, signal, folded, L)
    if grad_folded is not None:
        sums = fold_taps(window_sums(signal[:, None], L))
        grad_folded = grad_folded + c3[:, None] * sums - c4[:, None] * weighted_gram_product(
            ops, signal, filters, folded, edges)
    if grad_x is not None:
        grad_x = grad_x.double() + input_gradient_terms(ops, signal, filters, folded, c3, c4,
                                                        edges)
    return grad_folded, grad_x


def cpu_backward(grad_out, x, low_hz_, band_hz_, weight, bias, mean, var, mask_bits, bin_stats,
                 cfg: FilterbankConfig, need_input: bool = True, need_filters: bool = True):
    """Gradients of (x, low_hz_, band_hz_, weight, bias) from the saved data (DESIGN.md §3.3);
    ``need_input`` / ``need_filters`` False skip that heavy product (the gradient is None)."""
    ops = _ops()
    dtype = compute_dtype(x.dtype)
    L, n_out = cfg.kernel_size, x.shape[-1] - cfg.kernel_size + 1
    with single_threaded():
        signal = x[:, 0].to(dtype).contiguous()
        filters, folded = _filters(low_hz_, band_hz_, cfg, dtype)
        w = bin_weights(grad_out.to(dtype), n_out).contiguous()
        c, c3, c4, dgamma, dbeta = bn_backward_coefficients(
            w, bin_stats, weight.detach(), mean, var, cfg.eps, x.shape[0] * n_out, cfg.training)
        scaled = (c[:, None] * filters[:, : L // 2 + 1]).to(dtype).contiguous()
    corr = torch.empty(filters.shape[0], L // 2 + 1, dtype=torch.float64)
    grad_x = torch.empty_like(signal)
    if need_input or need_filters:
        ops.filterbank_backward(w, signal, scaled, mask_bits.contiguous(), corr, grad_x,
                                need_filters, need_input)
    grad_x = grad_x if need_input else None
    grad_low = grad_band = None
    with single_threaded():
        grad_folded = c[:, None] * corr if need_filters else None
        if cfg.training and (need_input or need_filters):
            grad_folded, grad_x = _statistics_gradient(ops, signal, filters, folded, grad_folded,
                                                       grad_x, c3, c4)
        if need_filters:
            grad_low, grad_band = cutoff_parameter_grads(
                unfold_gradient(grad_folded), low_hz_, band_hz_, L, cfg.sample_rate,
                cfg.min_low_hz, cfg.min_band_hz)
    return (None if grad_x is None else grad_x[:, None].to(x.dtype), grad_low, grad_band,
            dgamma.to(weight.dtype), dbeta.to(bias.dtype))


def auto_priority_cpu_direct(device_type: str, kernel_size: int):
    """'cpu' backend: first choice on the CPU below the crossover, second above it."""
    if device_type != "cpu":
        return None
    return 20.0 if kernel_size < CPU_CROSSOVER_LENGTH else 30.0



SELF_TEST = SelfTest("the C++ CPU backend ('cpu')",
                     lambda: compare_with_reference(cpu_forward, cpu_backward),
                     "backend='auto' uses the next available backend instead")


def cpu_backend_ready() -> bool:
    """True when the C++ kernels are built, loaded and have passed their self-test (both run on
    the first call; each failure is warned about once)."""
    return _build.load_cpu_extension() and SELF_TEST.passed()


def cpu_unavailable_reason():
    """Why the 'cpu' backend cannot run here (build error or failed self-test), or None."""
    return _build.build_error() or SELF_TEST.reason()


register_backend(Backend(
    name="cpu", forward=cpu_forward, backward=cpu_backward, devices=("cpu",),
    available=cpu_backend_ready, unavailable_reason=cpu_unavailable_reason,
    auto_priority=auto_priority_cpu_direct,
    timed_on=("cpu",),
    summary="C++ folded direct product with fused epilogue and hand-written backward (CPU; "
            "float32/float64, no full-resolution tensors)"))
