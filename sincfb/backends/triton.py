"""The 'triton' backend: the fused filterbank as Triton kernels (DESIGN.md §3), CUDA first.

Forward (one call):
  1. ``_taps_kernel`` makes the left halves and centres of the K filters (float32, phases reduced
     in float64);
  2. training: ``s`` and ``A`` of the input windows in float64 (:func:`window_moments`: prefix sums,
     one FFT autocorrelation and two (L-1)-sample edge Gram matrices), then ``mu = g.s / M`` and
     ``var = g^T A g / M - mu^2``; eval: the running statistics;
  3. the taps are scaled by ``1 / sigma`` (BatchNorm folded into the filters) and ``_fwd_kernel``
     does the folded convolution, BN shift/affine, ReLU, pooling, mask bits and per-bin sums.

Backward: per-bin weights and the BN coefficients ``c, c3, c4`` from the saved data (O(B K P));
``_corr_kernel`` gives the folded filter-gradient product, ``_dx_kernel`` the folded transposed
product; the ``c3`` and ``c4`` terms are cheap: a tap-sum prefix, an FFT correlation of x with the
single (2L-1)-tap filter R and exact (L-1)x(L-1) edge corrections (:func:`autocorrelation_term`).
The cut-off gradients come from the filter gradient by the closed-form derivatives
(:func:`sincfb.filters.cutoff_parameter_grads`). No (B, K, N_out) tensor is ever allocated.

Input in float64 is delegated to the reference backend (the kernels compute in float32 with
float32 accumulation at best). Environment switches, read at call time:
``SINCFB_AUTOTUNE=0`` disables autotuning (one fixed tile configuration), and
``SINCFB_TRITON_POISON=1`` NaN-fills every kernel output and workspace before the launch, so an
element a kernel does not write shows up in the results (tests).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os

import torch
import torch.nn.functional as F

from ..algebra import (batch_statistics, bin_weights, bn_backward_coefficients, fast_fft_length,
                       fold_taps, tap_sums, unfold_gradient)
from ..filters import cutoff_parameter_grads
from ..pooling import bin_stats_dtype
from . import Backend, FilterbankConfig, get_backend, register_backend
from .common import recompute_nonfinite_clips

__all__ = ["triton_forward", "triton_backward", "triton_available", "triton_unavailable_reason",
           "window_moments", "autocorrelation_term", "full_filters"]

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@functools.cache
def _have_triton() -> bool:
    """Whether the triton package is installed (looked up, not imported)."""
    return importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """The backend can run here: triton is installed, and there is a CUDA device or the
    interpreter was asked for (TRITON_INTERPRET=1, set before sincfb is imported)."""
    return _have_triton() and (_INTERPRET or torch.cuda.is_available())


def triton_unavailable_reason():
    """Why :func:`triton_available` is False, or None."""
    if not _have_triton():
        return "the triton package is not installed"
    if not triton_available():
        return ("no CUDA device (TRITON_INTERPRET=1, set before sincfb is imported, runs the "
                "kernels in Triton's interpreter on the CPU)")
    return None


def _kernels():
    """The kernel module, imported on first use (importing sincfb must not import triton)."""
    from . import triton_kernels
    return triton_kernels


def _poison() -> bool:
    return os.environ.get("SINCFB_TRITON_POISON") == "1"


def _device_guard(device: torch.device):
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


# ----------------------------------------------------------------------------- float64 helpers

def window_moments(signal: torch.Tensor, kernel_size: int):
    """``s[l] = sum_{b,n} x[b, n+l]`` and ``A[l, m] = sum_{b,n} x[b, n+l] x[b, n+m]`` in float64.

    ``signal``: (B, N). ``A`` is Toeplitz up to edge terms (DESIGN.md §3.2): ``A[l, l+d] = A0[d] +
    sum_{i<l} (q_d[N_out + i] - q_d[i])`` with ``q_d[i] = sum_b x[b,i] x[b,i+d]``; ``A0`` comes from
    one FFT cross-correlation and the edge terms only touch the first and last L-1 samples.
    """
    xd = signal.double()
    L = kernel_size
    n = xd.shape[-1]
    n_out = n - L + 1
    prefix = F.pad(xd.sum(0).cumsum(0), (1, 0))
    taps = torch.arange(L, device=xd.device)
    sums = prefix[taps + n_out] - prefix[taps]
    size = fast_fft_length(n)            # >= N: no circular wrap-around for lags 0..L-1
    # conj_physical: see autocorrelation_term
    spectrum = (torch.conj_physical(torch.fft.rfft(xd[:, :n_out], size))
                * torch.fft.rfft(xd, size)).sum(0)
    lag0 = torch.fft.irfft(spectrum, size)[:L]
    if L == 1:
        return sums, lag0.view(1, 1)
    head, tail = xd[:, :L - 1], xd[:, n_out:]
    edge = tail.T @ tail - head.T @ head                        # (L-1, L-1)
    # edge[i, i + d] laid out as rows i, columns d (zero where i + d > L - 2)
    skew = F.pad(edge, (0, L)).as_strided((L - 1, L), (2 * L, 1))
    table = lag0[None, :] + F.pad(skew.cumsum(0), (0, 0, 1, 0))  # table[l, d] = A[l, l + d]
    idx = torch.arange(L, device=xd.device)
    return sums, table[torch.minimum(idx[:, None], idx[None, :]),
                       (idx[:, None] - idx[None, :]).abs()]


def full_filters(taps: torch.Tensor) -> torch.Tensor:
    """Whole symmetric filters (K, L) in float64 from the (K, C) left halves and centres."""
    t = taps.double()
    return torch.cat([t, t[:, :-1].flip(-1)], dim=-1)


def autocorrelation_term(signal: torch.Tensor, filters: torch.Tensor, c4: torch.Tensor,
                         n_out: int) -> torch.Tensor:
    """``sum_k c4_k T_k^T T_k x`` exactly, where T_k is the valid correlation with g_k: (B, N).

    Interior: x correlated with ``R[d] = sum_k c4_k sum_j g_k[j] g_k[j+d]`` (FFT). The first and
    last L-1 samples lose the terms of outputs outside [0, N_out): (L-1)x(L-1) corrections built
    from diagonal prefix sums of ``Cm = G^T diag(c4) G``."""
    xd = signal.double()
    B, n = xd.shape
    L = filters.shape[-1]
    cm = filters.T @ (c4[:, None] * filters)                        # (L, L)
    diagonals = F.pad(cm, (L - 1, L - 1)).as_strided((L, 2 * L - 1), (3 * L - 1, 1))
    running = diagonals.cumsum(0)       # running[v, e] = sum_{v' <= v} cm[v', v' + e - (L-1)]
    R = running[-1]                                                  # lags -(L-1)..(L-1)
    size = fast_fft_length(n + 2 * L - 2)
    padded = F.pad(xd, (L - 1, L - 1))
    # conj_physical, not .conj(): a lazily conjugated view lost its conjugation when this op ran
    # inside a torch.compile graph (seen with torch 2.11 on the CPU)
    full = torch.fft.irfft(torch.fft.rfft(padded, size)
                           * torch.conj_physical(torch.fft.rfft(R, size)), size)[:, :n]
    if L == 1:
        return full
    a = torch.arange(L - 1, device=xd.device)
    lag = a[None, :] - a[:, None] + (L - 1)
    head = R[lag] - running[a[:, None], lag]        # outputs n < 0:      sum over v' > i
    tail = running[a[:, None], lag]                 # outputs n >= N_out: sum over v' <= a
    full[:, :L - 1] -= xd[:, :L - 1] @ head.T
    full[:, n_out:] -= xd[:, n_out:] @ tail.T
    return full


# ----------------------------------------------------------------------------- packing

def _pack_taps(taps: torch.Tensor, scale, layout, precision: str) -> torch.Tensor:
    """(C_alloc, K_alloc) operand buffer: taps (times ``scale``), centre halved (the fold adds
    x[n+c] twice), zero padded; bf16 in 'bf16' mode on the GPU."""
    t = taps.double() if scale is None else taps.double() * scale[:, None]
    t[:, -1] *= 0.5
    dtype = torch.bfloat16 if precision == "bf16" and not _kernels().interpreting() \
        else torch.float32
    buf = torch.zeros(layout.C_alloc, layout.K_alloc, dtype=dtype, device=taps.device)
    buf[:layout.C, :layout.K] = t.T.to(dtype)
    return buf


def _pad_vector(v: torch.Tensor, layout) -> torch.Tensor:
    out = torch.zeros(layout.K_alloc, dtype=torch.float32, device=v.device)
    out[:layout.K] = v.float()
    return out


def _padded_input(x: torch.Tensor, layout) -> torch.Tensor:
    tk = _kernels()
    buf = torch.zeros(layout.B, layout.XS, dtype=torch.float32, device=x.device)
    buf[:, tk.X_LEFT:tk.X_LEFT + layout.N] = x[:, 0]
    return buf


def _centre_once(correlation: torch.Tensor) -> torch.Tensor:
    """The kernel's folded filter-gradient product (K, C) in the package's folding convention
    (:func:`sincfb.algebra.fold_taps`): the kernel folds the centre window as
    ``x[n+c] + x[n+L-1-c]``, i.e. twice, so its centre column is halved."""
    correlation = correlation.double()
    correlation[:, -1] *= 0.5
    return correlation


def _check(x: torch.Tensor):
    if not _have_triton():
        raise RuntimeError("the 'triton' backend needs the triton package")
    if x.device.type != "cuda" and not _INTERPRET:
        raise RuntimeError("the 'triton' backend runs on CUDA tensors (or on the CPU with "
                           "TRITON_INTERPRET=1 set before triton is imported)")


# ----------------------------------------------------------------------------- forward / backward

def triton_forward(x, low_hz_, band_hz_, weight, bias, running_mean, running_var,
                   cfg: FilterbankConfig):
    """Forward of the fused op; see ``sincfb.backends`` for the contract."""
    if x.dtype == torch.float64:
        return get_backend("reference").forward(x, low_hz_, band_hz_, weight, bias, running_mean,
                                                running_var, cfg)
    _check(x)
    tk = _kernels()
    with _device_guard(x.device):
        B, _, N = x.shape
        lay = tk.Layout(B, low_hz_.shape[0], N, cfg.kernel_size, cfg.pool_bins)
        taps = tk.filter_taps(low_hz_, band_hz_, cfg.kernel_size, cfg.sample_rate,
                              cfg.min_low_hz, cfg.min_band_hz)
        if cfg.training:
            sums, gram = window_moments(x[:, 0], cfg.kernel_size)
            mean, var = batch_statistics(full_filters(taps), sums, gram, B * lay.N_out)
        else:
            mean, var = running_mean.double(), running_var.double()
        inv_sigma = torch.rsqrt(var + cfg.eps)
        out, mask_bits, bin_stats = tk.forward_product(
            _padded_input(x, lay), _pack_taps(taps, inv_sigma, lay, cfg.precision),
            _pad_vector(-mean * inv_sigma, lay), _pad_vector(weight.detach(), lay),
            _pad_vector(bias.detach(), lay), lay, cfg.precision, x.dtype,
            bin_stats_dtype(x.dtype), _poison())
        # the pooling products spread a non-finite sample over the program's bins (0 * NaN)
        recompute_nonfinite_clips(out, mask_bits, bin_stats, x.float(), low_hz_, band_hz_,
                                  weight, bias, running_mean, running_var, cfg)
    if cfg.training:
        mean, var = mean.to(weight.dtype), var.to(weight.dtype)
    else:
        mean, var = running_mean.clone(), running_var.clone()
    return out, mean, var, mask_bits, bin_stats


def triton_backward(grad_out, x, low_hz_, band_hz_, weight, bias, mean, var, mask_bits,
                    bin_stats, cfg: FilterbankConfig):
    """Gradients of (x, low_hz_, band_hz_, weight, bias) from the saved bits and bin sums."""
    if x.dtype == torch.float64:
        return get_backend("reference").backward(grad_out, x, low_hz_, band_hz_, weight, bias,
                                                 mean, var, mask_bits, bin_stats, cfg)
    _check(x)
    tk = _kernels()
    with _device_guard(x.device):
        B, _, N = x.shape
        L = cfg.kernel_size
        lay = tk.Layout(B, low_hz_.shape[0], N, L, cfg.pool_bins)
        taps = tk.filter_taps(low_hz_, band_hz_, L, cfg.sample_rate, cfg.min_low_hz,
                              cfg.min_band_hz)
        g = full_filters(taps)
        w = bin_weights(grad_out.double(), lay.N_out)
        c, c3, c4, dgamma, dbeta = bn_backward_coefficients(
            w, bin_stats, weight.detach(), mean, var, cfg.eps, B * lay.N_out, cfg.training)
        weighted = (w * c[None, :, None]).float().contiguous()       # c_k w: dz' = c dz
        mask_bits = mask_bits.contiguous()
        poison = _poison()
        x_pad = _padded_input(x, lay)
        grad_taps = _centre_once(tk.filter_correlation(x_pad, weighted, mask_bits, lay,
                                                       cfg.precision, poison))
        grad_x = tk.transposed_product(_pack_taps(taps, None, lay, cfg.precision), weighted,
                                       mask_bits, lay, cfg.precision, poison)
        # the kernels apply c before the ReLU mask, so a non-finite c_k (an Inf gamma) vanishes
        # at the masked positions, where the composite's dy_k = c_k dz_k is Inf * 0 = NaN
        finite = torch.isfinite(c)
        grad_taps = torch.where(finite[:, None], grad_taps, torch.nan)
        grad_x = torch.where(finite.all(), grad_x, torch.nan)
        if cfg.training:   # the batch statistics depend on y: dy = c dz + c3 - c4 y
            sums, gram = window_moments(x[:, 0], L)
            grad_taps = (grad_taps + c3[:, None] * fold_taps(sums)[None, :]
                         - c4[:, None] * fold_taps(g @ gram))
            grad_x = (grad_x + tap_sums(g, c3, lay.N_out, N)[None, :]
                      - autocorrelation_term(x[:, 0], g, c4, lay.N_out))
        grad_low, grad_band = cutoff_parameter_grads(
            unfold_gradient(grad_taps), low_hz_, band_hz_, L, cfg.sample_rate,
            cfg.min_low_hz, cfg.min_band_hz)
    return (grad_x.to(x.dtype).view(B, 1, N), grad_low, grad_band, dgamma.to(weight.dtype),
            dbeta.to(bias.dtype))


register_backend(Backend(
    name="triton", forward=triton_forward, backward=triton_backward,
    devices=("cuda", "cpu") if _INTERPRET else ("cuda",),
    available=triton_available,
    unavailable_reason=triton_unavailable_reason,
    auto_priority=lambda device_type, kernel_size: 10.0 if device_type == "cuda" else None,
    summary="Triton kernels: folded implicit-GEMM forward with fused BN/ReLU/pool epilogue, "
            "bit-mask backward; CPU only through TRITON_INTERPRET=1"))
