"""The 'triton' backend: the fused filterbank as Triton kernels (DESIGN.md §3), CUDA first.

Forward (one call):
  1. ``_taps_kernel`` makes the left halves and centres of the K filters (float32, phases reduced
     in float64);
  2. training: ``s`` and ``A`` of the input windows in float64 (:func:`sincfb.algebra.window_moments`: prefix sums,
     one FFT autocorrelation and two (L-1)-sample edge Gram matrices), then ``mu = g.s / M`` and
     ``var = g^T A g / M - mu^2``; eval: the running statistics;
  3. the taps are scaled by ``1 / sigma`` (BatchNorm folded into the filters) and ``_fwd_kernel``
     does the folded convolution, BN shift/affine, ReLU, pooling, mask bits and per-bin sums.

Backward: per-bin weights and the BN coefficients ``c, c3, c4`` from the saved data (O(B K P));
``_corr_kernel`` gives the folded filter-gradient product, ``_dx_kernel`` the folded transposed
product; the ``c3`` and ``c4`` terms are cheap: a tap-sum prefix, an FFT correlation of x with the
single (2L-1)-tap filter R and exact (L-1)x(L-1) edge corrections (:func:`sincfb.algebra.autocorrelation_term`).
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

from ..algebra import (batch_statistics, bin_weights, bn_backward_coefficients, fold_taps,
                       statistics_filter_gradient, statistics_input_gradient, unfold_gradient,
                       window_moments)
from ..filters import cutoff_parameter_grads
from ..pooling import bin_stats_dtype
from . import Backend, FilterbankConfig, get_backend, register_backend
from .common import recompute_nonfinite_clips

__all__ = ["triton_forward", "triton_backward", "triton_available", "triton_unavailable_reason",
           "full_filters"]

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

def full_filters(taps: torch.Tensor) -> torch.Tensor:
    """Whole symmetric filters (K, L) in float64 from the (K, C) left halves and centres."""
    t = taps.double()
    return torch.cat([t, t[:, :-1].flip(-1)], dim=-1)


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
                    bin_stats, cfg: FilterbankConfig, need_input: bool = True,
                    need_filters: bool = True):
    """Gradients of (x, low_hz_, band_hz_, weight, bias) from the saved bits and bin sums;
    ``need_input`` / ``need_filters`` False skip that kernel (the gradient is None)."""
    if x.dtype == torch.float64:
        return get_backend("reference").backward(grad_out, x, low_hz_, band_hz_, weight, bias,
                                                 mean, var, mask_bits, bin_stats, cfg,
                                                 need_input=need_input, need_filters=need_filters)
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
        # the kernels apply c before the ReLU mask, so a non-finite c_k (an Inf gamma) vanishes
        # at the masked positions, where the composite's dy_k = c_k dz_k is Inf * 0 = NaN
        finite = torch.isfinite(c)
        grad_x = grad_low = grad_band = None
        if need_filters:
            grad_taps = _centre_once(tk.filter_correlation(_padded_input(x, lay), weighted,
                                                           mask_bits, lay, cfg.precision, poison))
            grad_taps = torch.where(finite[:, None], grad_taps, torch.nan)
            if cfg.training:   # the batch statistics depend on y: dy = c dz + c3 - c4 y
                grad_taps = grad_taps + fold_taps(statistics_filter_gradient(x[:, 0], g, c3, c4))
            grad_low, grad_band = cutoff_parameter_grads(
                unfold_gradient(grad_taps), low_hz_, band_hz_, L, cfg.sample_rate,
                cfg.min_low_hz, cfg.min_band_hz)
        if need_input:
            grad_x = tk.transposed_product(_pack_taps(taps, None, lay, cfg.precision), weighted,
                                           mask_bits, lay, cfg.precision, poison)
            grad_x = torch.where(finite.all(), grad_x, torch.nan)
            if cfg.training:
                grad_x = grad_x + statistics_input_gradient(x[:, 0], g, c3, c4)
            grad_x = grad_x.to(x.dtype).view(B, 1, N)
    return grad_x, grad_low, grad_band, dgamma.to(weight.dtype), dbeta.to(bias.dtype)


register_backend(Backend(
    name="triton", forward=triton_forward, backward=triton_backward,
    devices=("cuda", "cpu") if _INTERPRET else ("cuda",),
    available=triton_available,
    unavailable_reason=triton_unavailable_reason,
    auto_priority=lambda device_type, kernel_size: 10.0 if device_type == "cuda" else None,
    native_dtypes=("float32",),   # float64 input goes to the reference backend
    emulated_on=("cpu",),
    timed_on=("cuda",),
    summary="Triton kernels: folded implicit-GEMM forward with fused BN/ReLU/pool epilogue, "
            "bit-mask backward; CPU only through TRITON_INTERPRET=1"))
