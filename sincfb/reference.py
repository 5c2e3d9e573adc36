"""The plain-PyTorch oracle of the fused filterbank: sinc filters -> conv1d -> BatchNorm -> ReLU -> pool.

Every backend is tested against :func:`reference_filterbank` run in float64 (DESIGN.md §4). It is
written with ordinary PyTorch ops only, so autograd provides its gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .filters import sinc_filters

__all__ = ["reference_filterbank"]


def reference_filterbank(x: torch.Tensor, low_hz_: torch.Tensor, band_hz_: torch.Tensor,
                         weight: torch.Tensor | None, bias: torch.Tensor | None,
                         running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                         *, kernel_size: int, sample_rate: float, pool_bins: int,
                         min_low_hz: float = 50.0, min_band_hz: float = 50.0,
                         training: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                         upcast: bool = False) -> torch.Tensor:
    """Pooled output (B, K, pool_bins) of ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)``.

    ``training=True`` normalises with batch statistics and, when the running buffers are given,
    updates them in place exactly like ``BatchNorm1d`` with this ``momentum``. ``weight`` and
    ``bias`` may be None (no affine), as in ``F.batch_norm``. ``upcast=True`` computes in float64
    (running buffers too) and casts the output back to ``x.dtype``.
    """
    out_dtype = x.dtype
    if upcast:
        x, low_hz_, band_hz_, weight, bias = (None if t is None else t.double()
                                              for t in (x, low_hz_, band_hz_, weight, bias))
    filters = sinc_filters(low_hz_, band_hz_, kernel_size, sample_rate, min_low_hz, min_band_hz,
                           dtype=x.dtype)
    y = F.conv1d(x, filters.unsqueeze(1))
    if upcast and running_mean is not None:
        stats = [running_mean.double(), running_var.double()]
        z = F.batch_norm(y, *stats, weight, bias, training, momentum, eps)
        if training:
            running_mean.copy_(stats[0])
            running_var.copy_(stats[1])
    else:
        z = F.batch_norm(y, running_mean, running_var, weight, bias, training, momentum, eps)
    return F.adaptive_avg_pool1d(F.relu(z), pool_bins).to(out_dtype)
