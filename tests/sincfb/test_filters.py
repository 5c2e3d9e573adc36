"""Filter taps and their derivatives against DESIGN.md §2 written out independently in numpy."""
import numpy as np
import pytest
import torch

from sincfb.filters import (cutoff_parameter_grads, mel_init, odd_kernel_size,
                            sinc_filter_derivatives, sinc_filters)
from tests.oracles import numpy_mel_init, numpy_sinc_filters

FS = 16000.0
LENGTHS = [3, 4, 10, 31, 251, 501, 1001]


def random_raw_parameters(K, seed, fs=FS):
    """Raw parameters with mixed signs, a few exact zeros and bands that hit the Nyquist clamp."""
    g = torch.Generator().manual_seed(seed)
    low = (torch.rand(K, 1, generator=g, dtype=torch.float64) * fs / 2.2
           * torch.where(torch.rand(K, 1, generator=g) < 0.4, -1.0, 1.0))
    band = (torch.rand(K, 1, generator=g, dtype=torch.float64) * fs / 6
            * torch.where(torch.rand(K, 1, generator=g) < 0.4, -1.0, 1.0))
    band[::5] = fs          # clamped at fs / 2
    band[1::7] = -fs        # clamped, through a negative raw value
    return low, band


@pytest.mark.parametrize("L", LENGTHS)
def test_float64_filters_match_formula(L):
    low, band = random_raw_parameters(23, seed=L)
    got = sinc_filters(low, band, L, FS)
    want = numpy_sinc_filters(low.numpy(), band.numpy(), L, FS)
    assert got.dtype == torch.float64 and got.shape == (23, odd_kernel_size(L))
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("L", [251, 501, 1001, 10])
def test_float32_filters_within_float32_limit(L):
    low, band = random_raw_parameters(17, seed=100 + L)
    got = sinc_filters(low.float(), band.float(), L, FS)
    # the float64 formula at the float32-rounded parameters: the taps' own error, not the inputs'
    want = numpy_sinc_filters(low.float().double().numpy(), band.float().double().numpy(), L, FS)
    assert got.dtype == torch.float32
    assert np.abs(got.double().numpy() - want).max() <= 1e-4


def test_even_kernel_size_is_bumped_and_filters_are_symmetric():
    low, band = random_raw_parameters(5, seed=1)
    g = sinc_filters(low, band, 8, FS)
    assert g.shape[-1] == 9
    torch.testing.assert_close(g, g.flip(-1), rtol=0, atol=0)
    assert torch.all(g[:, 4] == 1)


@pytest.mark.parametrize("L", [31, 1001])
def test_other_sample_rates_and_floors(L):
    low, band = random_raw_parameters(9, seed=7, fs=22050)
    got = sinc_filters(low, band, L, 22050, min_low_hz=20, min_band_hz=80)
    want = numpy_sinc_filters(low.numpy(), band.numpy(), L, 22050, 20, 80)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("K, fs", [(160, 16000), (7, 22050), (1, 8000)])
def test_mel_initialisation(K, fs):
    low, band = mel_init(K, fs, dtype=torch.float64)
    want_low, want_band = numpy_mel_init(K, fs)
    assert low.shape == band.shape == (K, 1)
    np.testing.assert_allclose(low[:, 0].numpy(), want_low, rtol=1e-14)
    np.testing.assert_allclose(band[:, 0].numpy(), want_band, rtol=1e-12)
    assert low[0, 0] == pytest.approx(30.0)
    assert float(low[-1, 0] + band[-1, 0]) == pytest.approx(fs / 2 - 100)


def _filters_from_cutoffs(low, high, L, fs):
    """g(low, high) with autograd, written directly in the cut-offs (not the raw parameters)."""
    c = L // 2
    t = torch.arange(-c, 0, dtype=torch.float64)
    u = torch.linspace(0, L / 2 - 1, c, dtype=torch.float64)
    w = 0.54 - 0.46 * torch.cos(2 * np.pi * u / L)
    a = np.pi * t / fs
    left = w * (torch.sin(2 * high * a) - torch.sin(2 * low * a)) / a / (2 * (high - low))
    return torch.cat([left, torch.ones_like(low), left.flip(-1)], -1)


@pytest.mark.parametrize("L", [5, 251, 1001])
def test_tap_derivatives_match_autograd(L):
    g = torch.Generator().manual_seed(L)
    low_raw = torch.rand(11, 1, generator=g, dtype=torch.float64) * 5000
    band_raw = torch.rand(11, 1, generator=g, dtype=torch.float64) * 2000
    low = (50 + low_raw).requires_grad_()
    high = (low.detach() + 50 + band_raw).requires_grad_()
    taps = _filters_from_cutoffs(low, high, L, FS)
    _, dg_dlow, dg_dhigh = sinc_filter_derivatives(low_raw, band_raw, L, FS)
    for k in (0, 5, 10):
        for j in (0, L // 3, L // 2, L - 1):
            d_low, d_high = torch.autograd.grad(taps[k, j], (low, high), retain_graph=True)
            assert dg_dlow[k, j].item() == pytest.approx(d_low[k, 0].item(), rel=1e-9, abs=1e-13)
            assert dg_dhigh[k, j].item() == pytest.approx(d_high[k, 0].item(), rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("L", [4, 31, 501])
def test_cutoff_parameter_grads_match_autograd(L):
    """The chain through abs and clamp, including zeros, negatives and clamped bands."""
    low, band = random_raw_parameters(29, seed=3 * L)
    low[3] = 0.0          # |.| at 0: PyTorch's subgradient is 0
    band[4] = 0.0
    low_, band_ = low.clone().requires_grad_(), band.clone().requires_grad_()
    upstream = torch.randn(29, odd_kernel_size(L), dtype=torch.float64)
    want = torch.autograd.grad((sinc_filters(low_, band_, L, FS) * upstream).sum(), (low_, band_))
    got = cutoff_parameter_grads(upstream, low, band, L, FS)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert got[1][0, 0] == 0 and got[1][5, 0] == 0  # clamped bands get no band gradient
