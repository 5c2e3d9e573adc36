"""Adaptive-pooling bins and the compact data the fused backward keeps (DESIGN.md §3.3).

The fast backends never store the (B, K, N_out) activations. They keep the ReLU mask as packed bits
and, per pooling bin, the count of positive positions and the sum of the normalised activation over
them. These helpers define those layouts once, in plain PyTorch, for every backend and the tests.
"""
from __future__ import annotations

import torch

__all__ = ["bin_stats_dtype", "bin_bounds", "bin_sums", "bin_means", "pack_mask", "unpack_mask",
           "packed_mask_width", "spread_bins", "relu_mask", "masked_zhat"]


def bin_stats_dtype(input_dtype: torch.dtype) -> torch.dtype:
    """dtype of the saved per-bin sums (``bin_stats``): float32, or float64 when the input is
    float64."""
    return torch.promote_types(input_dtype, torch.float32)


def bin_bounds(length: int, bins: int, device=None):
    """Start (inclusive) and end (exclusive) of each ``AdaptiveAvgPool1d`` bin, as int64 tensors.

    Bin ``i`` covers ``[floor(i n / P), ceil((i + 1) n / P))``; neighbouring bins overlap by one
    sample when ``P`` does not divide ``n``.
    """
    i = torch.arange(bins, dtype=torch.int64, device=device)
    starts = (i * length) // bins
    ends = ((i + 1) * length + bins - 1) // bins
    return starts, ends


def bin_sums(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Sum of ``values`` (..., n) over each pooling bin, accumulated in float64: (..., bins)."""
    starts, ends = bin_bounds(values.shape[-1], bins, values.device)
    prefix = torch.nn.functional.pad(values.double().cumsum(-1), (1, 0))
    return prefix[..., ends] - prefix[..., starts]


def bin_means(values: torch.Tensor, bins: int) -> torch.Tensor:
    """``AdaptiveAvgPool1d(bins)`` of (B, K, n) ``values``, in operators that export exactly.

    Torch's own decomposition of the pool computes its gather indices with ``torch.div``, which
    the ONNX exporter evaluates in float32: wrong bins once ``i * n`` passes 2^24 (every paper-size
    bank). Here the indices come from :func:`bin_bounds` (integer ``//``), and each bin gathers
    ``n // P + 2`` positions (its longest possible span), those past its end pointing at an
    appended zero. The gather runs over time-major rows so that every index copies a contiguous
    (B, K) block, about twice as fast in onnxruntime as gathering along the last axis; no
    reshape involves B, so an export with a derived batch size (a song's clips) needs no guard.
    """
    length = values.shape[-1]
    starts, ends = bin_bounds(length, bins, values.device)
    span = length // bins + 2
    positions = starts[:, None] + torch.arange(span, device=values.device)
    positions = torch.where(positions < ends[:, None], positions, length)
    rows = torch.nn.functional.pad(values, (0, 1)).permute(2, 0, 1)        # (n + 1, B, K)
    sums = rows[positions.flatten()].unflatten(0, (bins, span)).sum(1)    # (P, B, K)
    means = sums / (ends - starts).to(values.dtype)[:, None, None]
    return means.permute(1, 2, 0)


def relu_mask(z: torch.Tensor) -> torch.Tensor:
    """Where the composite's ReLU passes its input and its gradient: ``not z <= 0``, i.e. z > 0
    or NaN. ``relu(NaN)`` is NaN, and torch's ReLU backward (``threshold_backward``) zeroes the
    gradient only where ``z <= 0``, so a NaN position passes it; ``z > 0`` would turn both into
    zeros (``NaN > 0`` is False)."""
    return ~(z <= 0)


def masked_zhat(zhat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``zhat`` on the ReLU mask, else ``zhat - zhat``: 0 for finite zhat, NaN for NaN or Inf. Its
    bin sums S give dgamma = sum(w * S) the non-finite values of the composite's
    ``sum(dz * zhat)``, where ``dz = 0`` off the mask still meets a non-finite zhat (0 * Inf)."""
    return torch.where(mask, zhat, zhat - zhat)


def spread_bins(per_bin: torch.Tensor, length: int) -> torch.Tensor:
    """Adjoint of :func:`bin_sums`: each position receives the sum of the values of the bins holding
    it. ``per_bin`` (..., P) -> (..., length)."""
    bins = per_bin.shape[-1]
    starts, ends = bin_bounds(length, bins, per_bin.device)
    delta = per_bin.new_zeros(per_bin.shape[:-1] + (length + 1,))
    delta.index_add_(-1, starts, per_bin)
    delta.index_add_(-1, ends, -per_bin)
    return delta[..., :length].cumsum(-1)


def packed_mask_width(length: int) -> int:
    """Bytes per row of a packed mask of ``length`` bits."""
    return (length + 7) // 8


_BIT_WEIGHTS = [1 << i for i in range(8)]


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a boolean (..., n) tensor into uint8 (..., ceil(n / 8)); bit i of byte j is element 8j+i."""
    n = mask.shape[-1]
    padded = torch.nn.functional.pad(mask.to(torch.uint8), (0, 8 * packed_mask_width(n) - n))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=mask.device)
    return (padded.unflatten(-1, (-1, 8)) * weights).sum(-1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`pack_mask`: uint8 (..., ceil(n / 8)) -> bool (..., length)."""
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) & weights) != 0
    return bits.flatten(-2)[..., :length]
