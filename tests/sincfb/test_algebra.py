"""DESIGN.md §3's algebra (sincfb.algebra) against direct full-resolution computations."""
import pytest
import torch
import torch.nn.functional as F

from sincfb import algebra
from sincfb.backends import FilterbankConfig
from sincfb.backends.reference import reference_backward, reference_forward
from sincfb.filters import cutoff_parameter_grads, sinc_filters
from tests.oracles import authors_bank, randomise_bank
from tests.tolerance import relative_error, tolerance

CASES = [(2, 300, 6, 31, 13), (1, 200, 5, 11, 7), (3, 150, 4, 51, 100)]


def _windows(x, L):
    return x[:, 0].double().unfold(-1, L, 1)           # (B, N_out, L)


@pytest.mark.parametrize("B, N, K, L, P", CASES)
def test_window_sums_and_gram(B, N, K, L, P):
    x = torch.randn(B, 1, N)
    W = _windows(x, L)
    torch.testing.assert_close(algebra.window_sums(x, L), W.sum((0, 1)))
    torch.testing.assert_close(algebra.window_gram(x, L), torch.einsum("bnl,bnm->lm", W, W))


@pytest.mark.parametrize("B, N, K, L, P", CASES)
def test_statistics_and_folding(B, N, K, L, P):
    x = torch.randn(B, 1, N, dtype=torch.float64)
    bank = randomise_bank(authors_bank(K, L, P))
    g = sinc_filters(bank[0].low_hz_, bank[0].band_hz_, L, 16000, dtype=torch.float64)
    y = F.conv1d(x, g[:, None])
    mean, var = algebra.batch_statistics(g, algebra.window_sums(x, L), algebra.window_gram(x, L),
                                         B * (N - L + 1))
    torch.testing.assert_close(mean, y.mean((0, 2)))
    torch.testing.assert_close(var, y.var((0, 2), unbiased=False))
    torch.testing.assert_close(algebra.folded_conv1d(x, g), y)


def test_weighted_filter_autocorrelation():
    g = torch.randn(3, 7, dtype=torch.float64)
    coef = torch.randn(3, dtype=torch.float64)
    R = algebra.weighted_filter_autocorrelation(g, coef)
    for d in range(-6, 7):
        want = sum(coef[k] * sum(g[k, j] * g[k, j + d] for j in range(7) if 0 <= j + d < 7)
                   for k in range(3))
        assert R[d + 6].item() == pytest.approx(want.item(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("B, N, K, L, P", CASES)
def test_backward_from_saved_equals_reference_backward(B, N, K, L, P, training):
    bank = randomise_bank(authors_bank(K, L, P)).double()
    sinc, bn = bank[0], bank[1]
    cfg = FilterbankConfig(L, 16000.0, 50.0, 50.0, P, training, 1e-5, "ieee")
    x = torch.randn(B, 1, N, dtype=torch.float64)
    params = (sinc.low_hz_.detach(), sinc.band_hz_.detach(), bn.weight.detach(), bn.bias.detach())
    out, mean, var, mask_bits, bin_stats = reference_forward(x, *params, bn.running_mean,
                                                             bn.running_var, cfg)
    grad_out = torch.randn_like(out)
    want = reference_backward(grad_out, x, *params, mean, var, mask_bits, bin_stats, cfg)
    g = sinc_filters(params[0], params[1], L, 16000)
    dx, dg, dgamma, dbeta = algebra.backward_from_saved(grad_out, x, g, params[2], mean, var,
                                                        mask_bits, bin_stats, 1e-5, training)
    dlow, dband = cutoff_parameter_grads(dg, params[0], params[1], L, 16000.0)
    for got, ref in zip((dx, dlow, dband, dgamma, dbeta), want):
        assert relative_error(got, ref) <= tolerance(torch.float64)
