"""The 'reference' backend: the plain composite at full resolution, on any device.

Forward runs ``conv1d`` and materialises (B, K, N_out) tensors, then derives the compact data the
fast backends save (mask bits, per-bin counts and sums) so the operation's outputs have the same
meaning whatever the backend. Backward recomputes the convolution and applies the chain rule written
out at full resolution (no autograd: a custom op's kernel runs below the autograd dispatch key):
simple and easy to check, neither fast nor lean.

The fast backends hand it eval-mode clips with NaN or Inf samples, whose exact non-finite pattern
only a direct product gives (:func:`sincfb.backends.common.recompute_nonfinite_clips`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..filters import cutoff_parameter_grads, sinc_filters
from ..pooling import (bin_bounds, bin_stats_dtype, bin_sums, masked_zhat, pack_mask, relu_mask,
                       spread_bins, unpack_mask)
from . import Backend, FilterbankConfig, register_backend


def _filters(low_hz_, band_hz_, cfg: FilterbankConfig, dtype):
    return sinc_filters(low_hz_, band_hz_, cfg.kernel_size, cfg.sample_rate, cfg.min_low_hz,
                        cfg.min_band_hz, dtype=dtype)


def _normalise(y, weight, bias, mean, var, cfg: FilterbankConfig):
    """``zhat`` and ``z`` for the given statistics (K,), broadcast over (B, K, N)."""
    zhat = (y - mean[:, None].to(y.dtype)) * torch.rsqrt(var[:, None].to(y.dtype) + cfg.eps)
    return zhat, zhat * weight[:, None].to(y.dtype) + bias[:, None].to(y.dtype)


def reference_forward(x, low_hz_, band_hz_, weight, bias, running_mean, running_var,
                      cfg: FilterbankConfig):
    """Forward of the fused op at full resolution; see ``sincfb.backends`` for the contract."""
    y = F.conv1d(x, _filters(low_hz_, band_hz_, cfg, x.dtype).unsqueeze(1))
    stats_dtype = weight.dtype
    if cfg.training:
        mean = y.mean(dim=(0, 2), dtype=torch.float64)
        var = (y.double() - mean[:, None]).square().mean(dim=(0, 2))
        mean, var = mean.to(stats_dtype), var.to(stats_dtype)
    else:
        mean, var = running_mean.clone(), running_var.clone()
    zhat, z = _normalise(y, weight, bias, mean, var, cfg)
    mask = relu_mask(z)
    out = F.adaptive_avg_pool1d(torch.where(mask, z, 0), cfg.pool_bins)
    bin_stats = torch.stack([bin_sums(mask, cfg.pool_bins),
                             bin_sums(masked_zhat(zhat, mask), cfg.pool_bins)])
    bin_stats = bin_stats.to(bin_stats_dtype(x.dtype))
    return out, mean, var, pack_mask(mask), bin_stats


def reference_backward(grad_out, x, low_hz_, band_hz_, weight, bias, mean, var, mask_bits,
                       bin_stats, cfg: FilterbankConfig, need_input: bool = True,
                       need_filters: bool = True):
    """Gradients of (x, low_hz_, band_hz_, weight, bias): the chain rule written out at full
    resolution (pool -> ReLU -> BatchNorm -> conv1d -> filter taps -> cut-off parameters).
    ``need_input`` / ``need_filters`` False skip the product for x / for the cut-offs (None)."""
    filters = _filters(low_hz_, band_hz_, cfg, x.dtype)
    y = F.conv1d(x, filters.unsqueeze(1))
    n_out = y.shape[-1]
    zhat, _ = _normalise(y, weight, bias, mean, var, cfg)
    mask = unpack_mask(mask_bits, n_out)
    starts, ends = bin_bounds(n_out, cfg.pool_bins, x.device)
    per_bin = grad_out / (ends - starts).to(grad_out.dtype)       # d out / d a = 1 / |bin|
    dz = torch.where(mask, spread_bins(per_bin, n_out).to(y.dtype), 0)
    grad_bias = dz.sum(dim=(0, 2))
    grad_weight = (dz * zhat).sum(dim=(0, 2))
    scale = (weight.to(y.dtype) * torch.rsqrt(var.to(y.dtype) + cfg.eps))[:, None]
    if cfg.training:   # batch statistics depend on y: subtract the mean and the projection on zhat
        count = y.shape[0] * n_out
        dy = scale * (dz - (grad_bias[:, None] + zhat * grad_weight[:, None]) / count)
    else:
        dy = scale * dz
    grad_x = torch.nn.grad.conv1d_input(x.shape, filters.unsqueeze(1), dy) if need_input else None
    grad_low = grad_band = None
    if need_filters:
        grad_filters = torch.nn.grad.conv1d_weight(x, (filters.shape[0], 1, filters.shape[1]), dy)
        grad_low, grad_band = cutoff_parameter_grads(
            grad_filters[:, 0], low_hz_, band_hz_, cfg.kernel_size, cfg.sample_rate,
            cfg.min_low_hz, cfg.min_band_hz)
    return grad_x, grad_low, grad_band, grad_weight.to(weight.dtype), grad_bias.to(bias.dtype)


register_backend(Backend(
    name="reference", forward=reference_forward, backward=reference_backward,
    devices=("cpu", "cuda"),
    auto_priority=lambda device_type, kernel_size: 100.0,   # the fallback: last choice anywhere
    summary="plain conv1d composite at full resolution; the oracle, any float dtype"))
