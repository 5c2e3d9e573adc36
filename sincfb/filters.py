"""Sinc band-pass filters (DESIGN.md §2) and their closed-form derivatives (DESIGN.md §3.4).

Every function here computes in float64 and casts the result at the end. The taps are cheap (K x L
numbers) and float32 phase arguments reach ~1,600 rad at L=1001, where float32 rounding alone costs
about 1e-4 rad (DESIGN.md §4); float64 keeps every backend's filters exact whatever its data dtype.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "odd_kernel_size",
    "mel_init",
    "hz_to_mel",
    "mel_to_hz",
    "cutoff_frequencies",
    "half_window",
    "sinc_filters",
    "sinc_filter_derivatives",
    "cutoff_parameter_grads",
    "check_filter_config",
]


def odd_kernel_size(kernel_size: int) -> int:
    """Return the filter length actually used: SincNet bumps an even length to the next odd one."""
    return kernel_size + 1 if kernel_size % 2 == 0 else kernel_size


def check_filter_config(out_channels: int, kernel_size: int, sample_rate: float,
                        min_low_hz: float, min_band_hz: float) -> None:
    """Raise ``ValueError`` for a filterbank configuration that cannot describe band-pass filters."""
    if not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}")
    if not isinstance(kernel_size, int) or kernel_size < 3:
        raise ValueError(f"kernel_size must be an integer >= 3, got {kernel_size!r}")
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    if min_low_hz < 0 or min_band_hz < 0:
        raise ValueError(f"min_low_hz and min_band_hz must be >= 0, got {min_low_hz}, {min_band_hz}")
    if min_low_hz + min_band_hz >= sample_rate / 2:
        raise ValueError(
            f"min_low_hz + min_band_hz = {min_low_hz + min_band_hz} Hz leaves no band below the "
            f"Nyquist frequency {sample_rate / 2} Hz")


def hz_to_mel(hz):
    """The mel scale SincNet initialises on: ``2595 log10(1 + hz / 700)`` (numpy arrays or
    numbers; negative frequencies count as 0, as a plot axis needs)."""
    return 2595.0 * np.log10(1.0 + np.maximum(hz, 0.0) / 700.0)


def mel_to_hz(mel):
    """The inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_init(out_channels: int, sample_rate: float, min_low_hz: float = 50.0,
             min_band_hz: float = 50.0, dtype: torch.dtype = torch.float32):
    """SincNet's initial raw parameters ``(low_hz_, band_hz_)``, each of shape (K, 1).

    K+1 points evenly spaced on the mel scale from 30 Hz to ``fs/2 - (min_low_hz + min_band_hz)``:
    ``low_hz_`` holds the first K points and ``band_hz_`` their differences.
    """
    top_hz = sample_rate / 2 - (min_low_hz + min_band_hz)
    hz = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(top_hz), out_channels + 1))
    low = torch.tensor(hz[:-1], dtype=dtype).view(-1, 1)
    band = torch.tensor(np.diff(hz), dtype=dtype).view(-1, 1)
    return low, band


def cutoff_frequencies(low_hz_: torch.Tensor, band_hz_: torch.Tensor, sample_rate: float,
                       min_low_hz: float = 50.0, min_band_hz: float = 50.0):
    """Map raw parameters to cut-offs: ``low = min_low + |low_hz_|``, ``high = clamp(low + min_band
    + |band_hz_|, min_low, fs/2)``. Differentiable with autograd; returns ``(low, high)``."""
    low = min_low_hz + low_hz_.abs()
    # float bounds: an int bound (min_low_hz=50, the default) makes the ONNX exporter look for a
    # clamp(Tensor, Tensor, float) overload that does not exist, and the export fails
    high = torch.clamp(low + min_band_hz + band_hz_.abs(), float(min_low_hz), sample_rate / 2)
    return low, high


def half_window(kernel_size: int, device=None) -> torch.Tensor:
    """SincNet's Hamming-like window on the left half of the filter, float64, length ``L // 2``.

    It samples ``0.54 - 0.46 cos(2 pi u / L)`` on ``u = linspace(0, L/2 - 1, L // 2)``, which is not
    exactly a Hamming window (off by at most 2.7e-5 at L=251); we keep SincNet's grid so trained
    SincNet checkpoints give the same filters.
    """
    L = odd_kernel_size(kernel_size)
    u = torch.linspace(0.0, L / 2 - 1, L // 2, dtype=torch.float64, device=device)
    return 0.54 - 0.46 * torch.cos(2 * math.pi * u / L)


def _left_offsets(L: int, device) -> torch.Tensor:
    """Sample offsets ``t_j = j - c`` of the left half (all negative), float64."""
    return torch.arange(-(L // 2), 0, dtype=torch.float64, device=device)


def _mirror(left: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    return torch.cat([left, centre, left.flip(-1)], dim=-1)


def sinc_filters(low_hz_: torch.Tensor, band_hz_: torch.Tensor, kernel_size: int,
                 sample_rate: float, min_low_hz: float = 50.0, min_band_hz: float = 50.0,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """Band-pass filters of shape (K, L) from the raw parameters (DESIGN.md §2).

    ``L`` is ``kernel_size`` bumped to odd. Computed in float64 and cast to ``dtype`` (default: the
    parameters' dtype); differentiable with autograd with respect to both parameters.
    """
    dtype = dtype or low_hz_.dtype
    L = odd_kernel_size(kernel_size)
    low, high = cutoff_frequencies(low_hz_.double(), band_hz_.double(), sample_rate,
                                   min_low_hz, min_band_hz)
    t = _left_offsets(L, low.device)
    window = half_window(L, low.device)
    scaled_t = math.pi * t / sample_rate                      # pi t / fs
    left = window * (torch.sin(2 * high * scaled_t) - torch.sin(2 * low * scaled_t)) / scaled_t
    band = high - low
    centre = 2 * band
    return (_mirror(left, centre) / (2 * band)).to(dtype)


def sinc_filter_derivatives(low_hz_: torch.Tensor, band_hz_: torch.Tensor, kernel_size: int,
                            sample_rate: float, min_low_hz: float = 50.0,
                            min_band_hz: float = 50.0):
    """Filters and their exact derivatives with respect to the cut-offs, all float64 (K, L).

    With ``a = pi t / fs``, ``B = high - low`` and ``g = w (sin 2ha - sin 2la) / a / (2B)``:
    ``dg/dhigh = (w cos(2ha) - g) / B`` and ``dg/dlow = (g - w cos(2la)) / B``; the
    centre tap is identically 1, so both derivatives vanish there. Returns ``(g, dg_dlow, dg_dhigh)``.
    """
    L = odd_kernel_size(kernel_size)
    with torch.no_grad():
        low, high = cutoff_frequencies(low_hz_.double(), band_hz_.double(), sample_rate,
                                       min_low_hz, min_band_hz)
        t = _left_offsets(L, low.device)
        window = half_window(L, low.device)
        a = math.pi * t / sample_rate
        band = high - low
        g_left = window * (torch.sin(2 * high * a) - torch.sin(2 * low * a)) / a / (2 * band)
        dg_dhigh_left = (window * torch.cos(2 * high * a) - g_left) / band
        dg_dlow_left = (g_left - window * torch.cos(2 * low * a)) / band
        ones = torch.ones_like(band)
        zeros = torch.zeros_like(band)
        return (_mirror(g_left, ones), _mirror(dg_dlow_left, zeros), _mirror(dg_dhigh_left, zeros))


def cutoff_parameter_grads(grad_filters: torch.Tensor, low_hz_: torch.Tensor,
                           band_hz_: torch.Tensor, kernel_size: int, sample_rate: float,
                           min_low_hz: float = 50.0, min_band_hz: float = 50.0):
    """Chain a filter gradient dLoss/dg (K, L) back to ``(grad_low_hz_, grad_band_hz_)``, each (K, 1).

    Follows PyTorch's subgradient conventions so results equal autograd exactly: ``|p|'`` is
    ``sign(p)`` (0 at 0) and the clamp passes the gradient when the bound is met with equality.
    Returned in the parameters' dtype.
    """
    _, dg_dlow, dg_dhigh = sinc_filter_derivatives(low_hz_, band_hz_, kernel_size, sample_rate,
                                                   min_low_hz, min_band_hz)
    grad = grad_filters.double()
    grad_low = (grad * dg_dlow).sum(-1, keepdim=True)
    grad_high = (grad * dg_dhigh).sum(-1, keepdim=True)
    low_raw, band_raw = low_hz_.detach().double(), band_hz_.detach().double()
    low = min_low_hz + low_raw.abs()
    unclamped_high = low + min_band_hz + band_raw.abs()
    passes = (unclamped_high >= min_low_hz) & (unclamped_high <= sample_rate / 2)
    grad_high = torch.where(passes, grad_high, torch.zeros_like(grad_high))
    grad_low_raw = (grad_low + grad_high) * low_raw.sign()
    grad_band_raw = grad_high * band_raw.sign()
    return grad_low_raw.to(low_hz_.dtype), grad_band_raw.to(band_hz_.dtype)
