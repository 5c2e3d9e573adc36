"""The 'reference' backend of the fused op against the authors' composite (DESIGN.md §2, §4)."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from sincfb import FusedSincFilterbank, reference_filterbank
from tests.oracles import authors_bank, randomise_bank
from tests.sincfb.conformance import SHAPES, Shape, check_against_composite, relative_error


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_matches_composite(shape, training):
    check_against_composite("reference", shape, training, torch.float64, tol=1e-10)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_float32_within_ieee_tolerance(training):
    check_against_composite("reference", SHAPES[3], training, torch.float32, tol=1e-5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), channels=st.integers(1, 12), kernel_size=st.integers(3, 64),
       extra=st.integers(1, 300), data=st.data())
def test_random_shapes(batch, channels, kernel_size, extra, data):
    n_out = extra + (kernel_size % 2 == 0)  # an even L is bumped, keep N_out >= 1
    samples = kernel_size + n_out
    n_out_real = samples - (kernel_size + (kernel_size % 2 == 0)) + 1
    if batch * n_out_real < 2:
        samples += 1
        n_out_real += 1
    pool_bins = data.draw(st.integers(1, n_out_real))
    check_against_composite("reference", Shape(batch, samples, channels, kernel_size, pool_bins),
                            data.draw(st.booleans()), steps=1, seed=data.draw(st.integers(0, 2**20)))


def test_functional_reference_updates_running_stats_like_batchnorm():
    oracle = randomise_bank(authors_bank(6, 21, 9).double())
    x = torch.randn(2, 1, 200, dtype=torch.float64)
    mean, var = oracle[1].running_mean.clone(), oracle[1].running_var.clone()
    sinc, bn = oracle[0], oracle[1]
    out = reference_filterbank(x, sinc.low_hz_, sinc.band_hz_, bn.weight, bn.bias, mean, var,
                               kernel_size=21, sample_rate=16000, pool_bins=9, momentum=0.1)
    want = oracle(x)
    assert relative_error(out, want) < 1e-12
    assert relative_error(mean, bn.running_mean) < 1e-12
    assert relative_error(var, bn.running_var) < 1e-12


def test_upcast_reference_is_float64_accurate():
    oracle = randomise_bank(authors_bank(6, 251, 16))
    x = torch.randn(2, 1, 1000)
    sinc, bn = oracle[0], oracle[1]
    args = (x, sinc.low_hz_, sinc.band_hz_, bn.weight, bn.bias, None, None)
    kw = dict(kernel_size=251, sample_rate=16000, pool_bins=16)
    exact = oracle.double()(x.double())
    upcast = reference_filterbank(*args, upcast=True, **kw)
    assert upcast.dtype == torch.float32
    assert relative_error(upcast, exact) < 1e-6


def test_cumulative_momentum_and_no_running_stats():
    """momentum=None averages all batches; track_running_stats=False normalises with batch stats."""
    for kwargs in ({"momentum": None}, {"track_running_stats": False}):
        fused = FusedSincFilterbank(5, 15, pool_bins=8, backend="reference", **kwargs).double()
        seq = fused.to_sequential()
        for _ in range(3):
            x = torch.randn(2, 1, 100, dtype=torch.float64)
            assert relative_error(fused(x), seq(x)) < 1e-12
        fused.eval(), seq.eval()
        x = torch.randn(2, 1, 100, dtype=torch.float64)
        assert relative_error(fused(x), seq(x)) < 1e-12
        if fused.batch_norm.track_running_stats:
            assert relative_error(fused.batch_norm.running_var, seq[1].running_var) < 1e-12
