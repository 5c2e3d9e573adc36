"""The eval-mode fused filterbank in standard operators: what ``torch.export`` and ONNX see.

``torch.ops.sincfb.filterbank`` is a custom op, which ``torch.export`` keeps opaque and the ONNX
exporter cannot translate. In eval mode it needs none of its fused machinery: BatchNorm with
running statistics is an affine map per filter, so it folds into the filters,

    scale = gamma / sqrt(running_var + eps),   shift = beta - running_mean * scale,
    out   = AdaptiveAvgPool1d(ReLU(conv1d(x, scale * g, bias=shift))),

with the exact bins of :func:`sincfb.pooling.bin_means`. :func:`sincfb.ops.filterbank_step` traces
this instead of the op while an exporter runs (``torch.compiler.is_exporting()``), so the fused
banks of any model lower to ``conv1d``, ``relu`` and a gather-and-sum pool.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .filters import sinc_filters
from .pooling import bin_means

__all__ = ["folded_filters", "eval_filterbank"]


def folded_filters(low_hz_: Tensor, band_hz_: Tensor, weight: Optional[Tensor],
                   bias: Optional[Tensor], running_mean: Tensor, running_var: Tensor, *,
                   kernel_size: int, sample_rate: float, min_low_hz: float, min_band_hz: float,
                   eps: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The eval-mode BatchNorm folded into the sinc filters: ``(filters (K, 1, L), bias (K,))``
    for ``conv1d``, computed in float64 and cast to ``dtype``. A None ``weight`` or ``bias`` is
    BatchNorm without affine (gamma 1, beta 0)."""
    filters = sinc_filters(low_hz_, band_hz_, kernel_size, sample_rate, min_low_hz, min_band_hz,
                           dtype=torch.float64)
    scale = torch.rsqrt(running_var.double() + eps)
    if weight is not None:
        scale = scale * weight.double()
    shift = -running_mean.double() * scale
    if bias is not None:
        shift = shift + bias.double()
    return (filters * scale[:, None]).to(dtype).unsqueeze(1), shift.to(dtype)


def eval_filterbank(x: Tensor, low_hz_: Tensor, band_hz_: Tensor, weight: Optional[Tensor],
                    bias: Optional[Tensor], running_mean: Tensor, running_var: Tensor, *,
                    kernel_size: int, sample_rate: float, pool_bins: int, min_low_hz: float,
                    min_band_hz: float, eps: float) -> Tensor:
    """The fused op's eval-mode output (B, K, pool_bins) in standard operators: folded
    ``conv1d``, ``relu`` and the exact adaptive average pool."""
    filters, shift = folded_filters(low_hz_, band_hz_, weight, bias, running_mean, running_var,
                                    kernel_size=kernel_size, sample_rate=sample_rate,
                                    min_low_hz=min_low_hz, min_band_hz=min_band_hz, eps=eps,
                                    dtype=x.dtype)
    return bin_means(F.relu(F.conv1d(x, filters, shift)), pool_bins)
