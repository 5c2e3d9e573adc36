"""The fused bank under ``torch.export``: in eval mode it lowers to standard operators
(:mod:`sincfb.lowering`) and the exported program gives the eager outputs.

References are independent of the lowering: ``F.adaptive_avg_pool1d`` for the pool, and the
layer's own ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` in float64.
"""
import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank, fused_sinc_filterbank
from sincfb.lowering import eval_filterbank
from sincfb.pooling import bin_means
from tests.oracles import randomise_bank
from tests.tolerance import relative_error, tolerance


@pytest.mark.parametrize("length,bins", [(47000, 1024), (46081, 1024), (100, 7), (64, 64),
                                         (9, 1), (1000, 999)])
def test_bin_means_are_adaptive_average_pooling(length, bins):
    values = torch.randn(2, 3, length, dtype=torch.float64)
    torch.testing.assert_close(bin_means(values, bins), F.adaptive_avg_pool1d(values, bins),
                               rtol=1e-12, atol=1e-12)


def random_bank(seed: int, kernel_size: int = 63, pool_bins: int = 37) -> FusedSincFilterbank:
    """An eval-mode bank with random cut-offs, affine parameters and running statistics."""
    bank = FusedSincFilterbank(12, kernel_size, 16000, pool_bins, backend="reference")
    randomise_bank(bank, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        bank.batch_norm.weight[::3] *= -1          # a negative gamma flips the folded filter
    return bank.eval()


def test_lowering_equals_the_composite_in_float64():
    bank = random_bank(0).double()
    x = torch.randn(3, 1, 900, dtype=torch.float64)
    sinc, bn = bank.sinc, bank.batch_norm
    got = eval_filterbank(x, sinc.low_hz_, sinc.band_hz_, bn.weight, bn.bias, bn.running_mean,
                          bn.running_var, kernel_size=bank.kernel_size, sample_rate=16000.0,
                          pool_bins=bank.pool_bins, min_low_hz=50.0, min_band_hz=50.0,
                          eps=bn.eps)
    with torch.no_grad():
        assert relative_error(got, bank.to_sequential().eval()(x)) <= tolerance(same_terms=True)


def exported_ops(program) -> set:
    return {str(node.target) for node in program.graph.nodes if node.op == "call_function"}


@pytest.mark.parametrize("kernel_size,pool_bins,samples", [(63, 37, 900), (251, 1024, 48000)])
def test_exported_bank_matches_eager_mode(kernel_size, pool_bins, samples):
    bank = random_bank(1, kernel_size, pool_bins)
    traced = torch.randn(2, 1, samples)
    program = torch.export.export(bank, (traced,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    ops = exported_ops(program)
    assert not any("sincfb" in op for op in ops), ops       # lowered, not the custom op
    assert "aten.conv1d.default" in ops and "aten.relu.default" in ops
    reference = bank.to_sequential().double().eval()
    for batch in (1, 3):
        x = torch.randn(batch, 1, samples)
        with torch.no_grad():
            eager, exported = bank(x), program.module()(x)
            want = reference(x.double())
        assert exported.shape == (batch, 12, pool_bins)
        assert relative_error(exported, eager) < 1e-6
        assert relative_error(exported, want) < 1e-6


def test_functional_form_without_affine_exports():
    """``weight`` and ``bias`` None (BatchNorm1d(affine=False)) fold as gamma 1, beta 0."""
    bank = random_bank(2)
    sinc, bn = bank.sinc, bank.batch_norm

    class Functional(torch.nn.Module):
        def forward(self, x):
            return fused_sinc_filterbank(x, sinc.low_hz_, sinc.band_hz_, None, None,
                                         bn.running_mean, bn.running_var, kernel_size=63,
                                         sample_rate=16000, pool_bins=37, training=False,
                                         backend="reference")

    x = torch.randn(2, 1, 700)
    program = torch.export.export(Functional(), (x,))
    want = F.adaptive_avg_pool1d(F.relu(F.batch_norm(
        F.conv1d(x.double(), sinc.filters(torch.float64).unsqueeze(1)),
        bn.running_mean.double(), bn.running_var.double(), training=False)), 37)
    with torch.no_grad():
        assert relative_error(program.module()(x), want) < 1e-6
        assert relative_error(Functional()(x), want) < 1e-6
