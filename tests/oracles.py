"""Independent references for the tests: written from DESIGN.md §2's formulas, sharing no code with
the sincfb package, so a bug in the package cannot hide in its own oracle."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def numpy_sinc_filters(low_raw, band_raw, kernel_size, sample_rate, min_low_hz=50.0,
                       min_band_hz=50.0) -> np.ndarray:
    """Filters (K, L) in float64, tap by tap from DESIGN.md §2."""
    L = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
    low_raw = np.asarray(low_raw, dtype=np.float64).reshape(-1)
    band_raw = np.asarray(band_raw, dtype=np.float64).reshape(-1)
    low = min_low_hz + np.abs(low_raw)
    high = np.clip(low + min_band_hz + np.abs(band_raw), min_low_hz, sample_rate / 2)
    band = high - low
    c = (L - 1) // 2
    u = np.linspace(0.0, L / 2 - 1, L // 2)
    w = 0.54 - 0.46 * np.cos(2 * np.pi * u / L)
    g = np.empty((low.size, L))
    for j in range(c):
        t = j - c
        g[:, j] = (w[j] * (np.sin(2 * np.pi * high * t / sample_rate)
                           - np.sin(2 * np.pi * low * t / sample_rate))
                   / (np.pi * t / sample_rate) / (2 * band))
        g[:, L - 1 - j] = g[:, j]
    g[:, c] = 1.0
    return g


def numpy_mel_init(out_channels, sample_rate, min_low_hz=50.0, min_band_hz=50.0):
    """SincNet's mel initialisation, (low_hz_, band_hz_) as float64 arrays of shape (K,)."""
    mel = lambda hz: 2595 * np.log10(1 + hz / 700)
    top = sample_rate / 2 - (min_low_hz + min_band_hz)
    points = 700 * (10 ** (np.linspace(mel(30.0), mel(top), out_channels + 1) / 2595) - 1)
    return points[:-1], np.diff(points)


class AuthorsSincConv(nn.Module):
    """SincNet's ``SincConv_fast`` as its paper and the MS-SincResNet code define it, rewritten
    here from the formula: filters built in the parameters' dtype, then ``conv1d`` (valid)."""

    def __init__(self, out_channels, kernel_size, sample_rate=16000, min_low_hz=50, min_band_hz=50):
        super().__init__()
        if kernel_size % 2 == 0:
            kernel_size += 1
        self.out_channels, self.kernel_size, self.sample_rate = out_channels, kernel_size, sample_rate
        self.min_low_hz, self.min_band_hz = min_low_hz, min_band_hz
        low, band = numpy_mel_init(out_channels, sample_rate, min_low_hz, min_band_hz)
        self.low_hz_ = nn.Parameter(torch.tensor(low, dtype=torch.float32).view(-1, 1))
        self.band_hz_ = nn.Parameter(torch.tensor(band, dtype=torch.float32).view(-1, 1))

    def forward(self, x):
        dtype, L = self.low_hz_.dtype, self.kernel_size
        grid = torch.linspace(0, L / 2 - 1, L // 2, dtype=dtype)
        window = 0.54 - 0.46 * torch.cos(2 * math.pi * grid / L)
        half = (L - 1) / 2.0
        n = 2 * math.pi * torch.arange(-half, 0, dtype=dtype).view(1, -1) / self.sample_rate
        low = self.min_low_hz + self.low_hz_.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz,
                           self.sample_rate / 2)
        band = (high - low)[:, 0]
        left = ((torch.sin(high @ n) - torch.sin(low @ n)) / (n / 2)) * window
        taps = torch.cat([left, 2 * band.view(-1, 1), left.flip(1)], dim=1) / (2 * band[:, None])
        return F.conv1d(x, taps.view(self.out_channels, 1, L).to(x.dtype))


def authors_bank(out_channels, kernel_size, pool_bins, sample_rate=16000):
    """``Sequential(SincConv_fast, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` with the authors' keys."""
    return nn.Sequential(AuthorsSincConv(out_channels, kernel_size, sample_rate),
                         nn.BatchNorm1d(out_channels), nn.ReLU(), nn.AdaptiveAvgPool1d(pool_bins))


def randomise_bank(bank, generator=None, nyquist_hits=True):
    """Give a bank (ours or the authors') random raw cut-offs (signs mixed, some bands pushed past
    Nyquist), random BN affine parameters and running statistics, in place; returns it."""
    sinc, bn = bank[0] if isinstance(bank, nn.Sequential) else bank.sinc, \
        bank[1] if isinstance(bank, nn.Sequential) else bank.batch_norm
    K = sinc.low_hz_.shape[0]
    fs = sinc.sample_rate
    with torch.no_grad():
        low = torch.rand(K, 1, generator=generator, dtype=torch.float64) * fs / 2.5
        sign = torch.where(torch.rand(K, 1, generator=generator) < 0.3, -1.0, 1.0)
        band = torch.rand(K, 1, generator=generator, dtype=torch.float64) * fs / 8
        if nyquist_hits:
            band[::4] = fs  # these bands clamp at fs/2
        sinc.low_hz_.copy_(low * sign)
        sinc.band_hz_.copy_(band * torch.where(torch.rand(K, 1, generator=generator) < 0.3, -1.0, 1.0))
        bn.weight.copy_(torch.randn(K, generator=generator) * 0.5 + 1)
        bn.bias.copy_(torch.randn(K, generator=generator) * 0.5)
        bn.running_mean.copy_(torch.randn(K, generator=generator) * 0.1)
        bn.running_var.copy_(torch.rand(K, generator=generator) + 0.5)
    return bank
