"""The C++ 'cpu' backend (sincfb/csrc, sincfb/backends/cpu.py) beyond the conformance every
backend runs (test_conformance.py): clips of several tiles against the authors' composite
(DESIGN.md §4), each C++ stage against the plain-PyTorch algebra of DESIGN.md §3, poisoned output
buffers, int64 offsets, and the fallback when the build fails."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank, _build, algebra
from sincfb.backends import resolve_backend
from sincfb.backends import cpu as cpu_backend
from sincfb.filters import sinc_filters
from sincfb.pooling import bin_bounds, bin_sums, pack_mask, spread_bins, unpack_mask
from tests.oracles import authors_bank, randomise_bank
from tests.sincfb.conformance import Shape, check_against_composite
from tests.tolerance import relative_error, tolerance

pytestmark = pytest.mark.skipif(not _build.load_cpu_extension(),
                                reason=f"C++ CPU backend unavailable: {_build.build_error()}")

# Beyond SHAPES: several tiles per clip (the kernels tile 1024 outputs, the last tile shifted
# back), bins spanning tiles (P=1, P=3), overlapping bins of one or two positions (P ~ N_out).
TILED_SHAPES = [
    Shape(2, 5000, 7, 101, 3),
    Shape(1, 3000, 4, 51, 1),
    Shape(2, 4000, 5, 21, 3979),
    Shape(1, 2100, 3, 1001, 1100),
]


def ops():
    return torch.ops.sincfb_cpu


def symmetric_filters(K, L, dtype=torch.float64):
    g = torch.randn(K, L, dtype=torch.float64)
    return ((g + g.flip(-1)) / 2).to(dtype)


def folded(g):
    return g[:, : g.shape[-1] // 2 + 1].contiguous()


# --- beyond the conformance every backend runs (test_conformance.py): several tiles ----------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", TILED_SHAPES, ids=str)
def test_tiled_float64_matches_composite(shape, training):
    check_against_composite("cpu", shape, training, torch.float64)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_tiled_float32_within_ieee_tolerance(training):
    # the seed is fixed per case (tests.seeds): a ReLU decision within float32 rounding of z = 0
    # flips against the float64 composite about once in a thousand fresh draws
    check_against_composite("cpu", TILED_SHAPES[0], training, torch.float32)


def test_bfloat16_input_computes_in_float32():
    oracle = randomise_bank(authors_bank(4, 31, 8)).double()
    layer = FusedSincFilterbank(4, 31, pool_bins=8, backend="cpu")
    layer.load_state_dict(oracle.state_dict())
    x = torch.randn(2, 1, 300, dtype=torch.float64).to(torch.bfloat16).requires_grad_()
    out = layer(x)
    assert out.dtype == torch.bfloat16
    assert relative_error(out, oracle(x.double())) <= tolerance(torch.bfloat16)
    out.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()


# --- the C++ stages, one by one, against sincfb.algebra ------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("B, N, K, L", [(2, 3000, 5, 31), (1, 2100, 3, 1001), (3, 40, 7, 3)])
def test_folded_products(B, N, K, L, dtype):
    tol = tolerance(dtype, same_terms=True)
    g = symmetric_filters(K, L)
    x = torch.randn(B, N, dtype=torch.float64)
    y = ops().fold_correlate(x.to(dtype), folded(g).to(dtype))
    assert relative_error(y, F.conv1d(x[:, None], g[:, None])) < tol
    v = torch.randn(B, K, N - L + 1, dtype=torch.float64)
    transposed = ops().fold_correlate_transposed(v.to(dtype), folded(g).to(dtype))
    assert relative_error(transposed, F.conv_transpose1d(v, g[:, None])[:, 0]) < tol
    corr = ops().fold_window_correlation(v.to(dtype), x.to(dtype))
    full = torch.nn.grad.conv1d_weight(x[:, None], (K, 1, L), v)[:, 0]
    assert corr.dtype == torch.float64
    assert relative_error(corr, algebra.fold_taps(full)) < tol


def _bank_filters(K, L):
    bank = randomise_bank(authors_bank(K, L, 4))
    return sinc_filters(bank[0].low_hz_, bank[0].band_hz_, L, 16000, dtype=torch.float64)


@pytest.mark.parametrize("B, N, K, L", [(2, 700, 6, 31), (1, 2500, 4, 251), (3, 60, 5, 3)])
def test_statistics_and_gram_product_match_algebra(B, N, K, L):
    x = torch.randn(B, N, dtype=torch.float64)
    g = _bank_filters(K, L)
    sums, gram = algebra.window_sums(x[:, None], L), algebra.window_gram(x[:, None], L)
    want_mean, want_var = algebra.batch_statistics(g, sums, gram, B * (N - L + 1))
    mean, var = cpu_backend.training_statistics(ops(), x, g, folded(g))
    tol = tolerance(torch.float64)
    assert relative_error(mean, want_mean) <= tol and relative_error(var, want_var) <= tol
    edges = cpu_backend.edge_products(ops(), x, folded(g), L)
    product = cpu_backend.weighted_gram_product(ops(), x, g, folded(g), edges)
    assert relative_error(product, algebra.fold_taps(g @ gram)) <= tol


@pytest.mark.parametrize("B, N, K, L", [(2, 700, 6, 31), (1, 2500, 4, 251), (2, 12, 3, 5)])
def test_input_gradient_terms_match_algebra(B, N, K, L):
    """tap sums minus x correlated with R, edges corrected: algebra.input_gradient with c = 0."""
    x = torch.randn(B, N, dtype=torch.float64)
    g = _bank_filters(K, L)
    c3, c4 = torch.randn(K, dtype=torch.float64), torch.randn(K, dtype=torch.float64)
    edges = cpu_backend.edge_products(ops(), x, folded(g), L)
    got = cpu_backend.input_gradient_terms(ops(), x, g, folded(g), c3, c4, edges)
    dz = torch.zeros(B, K, N - L + 1, dtype=torch.float64)
    want = algebra.input_gradient(x[:, None], dz, g, torch.zeros(K, dtype=torch.float64), c3, c4)
    assert relative_error(got, want[:, 0]) <= tolerance(torch.float64)


def test_fold_and_unfold_of_tap_vectors():
    g = torch.randn(3, 9, dtype=torch.float64)
    symmetric = algebra.unfold_gradient(algebra.fold_taps(g))
    torch.testing.assert_close(symmetric, symmetric.flip(-1))
    torch.testing.assert_close(algebra.fold_taps(symmetric), algebra.fold_taps(g))


def _random_state(K, dtype):
    return (torch.randn(K, dtype=dtype) * 0.1, torch.rand(K, dtype=dtype) + 0.5,
            torch.randn(K, dtype=dtype) * 0.5 + 1, torch.randn(K, dtype=dtype) * 0.5)


def _poisoned(*shapes_and_dtypes):
    return [torch.full(shape, 255, dtype=dtype) if dtype == torch.uint8
            else torch.full(shape, float("nan"), dtype=dtype) for shape, dtype in shapes_and_dtypes]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("B, N, K, L, P", [(2, 3000, 5, 31, 17), (1, 1200, 3, 101, 1),
                                           (2, 1500, 4, 11, 1490), (3, 20, 2, 3, 5)])
def test_fused_forward_writes_every_output(B, N, K, L, P, dtype):
    """Buffers filled with NaN (and 0xFF for the mask) before the call: all must be overwritten,
    with the reference backend's values, and the mask's padding bits must be zero."""
    x = torch.randn(B, 1, N, dtype=torch.float64)
    g = _bank_filters(K, L)
    mean, var, gamma, beta = _random_state(K, torch.float64)
    n_out = N - L + 1
    out, mask_bits, bin_stats = _poisoned(((B, K, P), dtype),
                                          ((B, K, (n_out + 7) // 8), torch.uint8),
                                          ((2, B, K, P), dtype))
    ops().filterbank_forward(x[:, 0].to(dtype), folded(g).to(dtype), mean.to(dtype),
                             torch.rsqrt(var + 1e-5).to(dtype), gamma.to(dtype), beta.to(dtype),
                             out, mask_bits, bin_stats)
    y = F.conv1d(x, g[:, None])
    zhat = (y - mean[:, None]) * torch.rsqrt(var[:, None] + 1e-5)
    z = zhat * gamma[:, None] + beta[:, None]
    tol = tolerance(dtype, same_terms=True)
    assert relative_error(out, F.adaptive_avg_pool1d(F.relu(z), P)) < tol
    mask = unpack_mask(mask_bits, n_out)
    agree = (mask == (z > 0)).double().mean().item()
    assert agree == 1.0 if dtype == torch.float64 else agree > 0.999
    torch.testing.assert_close(pack_mask(mask), mask_bits)   # padding bits are zero
    assert torch.equal(bin_stats[0].double(), bin_sums(mask, P))
    assert relative_error(bin_stats[1], bin_sums(torch.where(mask, zhat, 0), P)) < tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("B, N, K, L, P", [(2, 3000, 5, 31, 17), (1, 1200, 3, 101, 1),
                                           (2, 1500, 4, 11, 1490)])
def test_fused_backward_products_match_algebra(B, N, K, L, P, dtype):
    """corr = one heavy product of dz with x; grad_x = the transposed product of c dz with g;
    dz from the mask bits and the bin weights (algebra.relu_mask_gradient). Poisoned buffers."""
    x = torch.randn(B, N, dtype=torch.float64)
    g = _bank_filters(K, L)
    c = torch.randn(K, dtype=torch.float64)
    n_out = N - L + 1
    mask_bits = pack_mask(torch.rand(B, K, n_out) > 0.4)
    w = algebra.bin_weights(torch.randn(B, K, P, dtype=torch.float64), n_out)
    corr, grad_x = _poisoned(((K, L // 2 + 1), torch.float64), ((B, N), dtype))
    ops().filterbank_backward(w.to(dtype), x.to(dtype), folded(c[:, None] * g).to(dtype),
                              mask_bits, corr, grad_x)
    dz = algebra.relu_mask_gradient(w, mask_bits, n_out)
    want_corr = torch.nn.grad.conv1d_weight(x[:, None], (K, 1, L), dz)[:, 0]
    want_dx = F.conv_transpose1d(dz * c[:, None], g[:, None])[:, 0]
    tol = tolerance(dtype, same_terms=True)
    assert relative_error(corr, algebra.fold_taps(want_corr)) < tol
    assert relative_error(grad_x, want_dx) < tol


def test_offsets_beyond_int32():
    """B K N_out > 2^31: the last filter's mask bits, pooled output, bin sums and both backward
    products are right (only the last filter is checked; scaled filters are zero elsewhere)."""
    B, K, L, P = 1, 1024, 3, 2
    N = (1 << 21) + L
    n_out = N - L + 1
    assert B * K * n_out > 2**31
    x = torch.randn(B, N)
    g = symmetric_filters(K, L, torch.float32)
    ones, zeros = torch.ones(K), torch.zeros(K)
    out = torch.empty(B, K, P)
    mask_bits = torch.empty(B, K, (n_out + 7) // 8, dtype=torch.uint8)
    bin_stats = torch.empty(2, B, K, P)
    ops().filterbank_forward(x, folded(g), zeros, ones, ones, zeros, out, mask_bits, bin_stats)
    y = F.conv1d(x[:, None].double(), g[-1:, None].double())[:, 0]
    mask = unpack_mask(mask_bits[:, -1], n_out)
    assert (mask[:, -4096:] == (y > 0)[:, -4096:]).double().mean() > 0.999   # float32 y
    tol = tolerance(torch.float32)
    assert relative_error(out[:, -1], F.adaptive_avg_pool1d(F.relu(y)[:, None], P)[:, 0]) <= tol
    assert torch.equal(bin_stats[0, :, -1].double(), bin_sums(mask, P))
    w = torch.randn(B, K, P)
    scaled = torch.zeros_like(folded(g))
    scaled[-1] = folded(g)[-1]
    corr, grad_x = torch.empty(K, L // 2 + 1, dtype=torch.float64), torch.empty(B, N)
    ops().filterbank_backward(w, x, scaled, mask_bits, corr, grad_x)
    dz = torch.where(mask, spread_bins(w[:, -1].double(), n_out), 0)
    want_corr = torch.nn.grad.conv1d_weight(x[:, None].double(), (1, 1, L), dz[:, None])[0, 0]
    want_dx = F.conv_transpose1d(dz[:, None], g[-1:, None].double())[:, 0]
    assert relative_error(corr[-1], algebra.fold_taps(want_corr)) <= tol
    assert relative_error(grad_x, want_dx) <= tol


def test_bin_bounds_used_by_the_kernels_follow_adaptive_pooling():
    """The C++ Bins formulas are the ones of sincfb.pooling (start floor, end ceil)."""
    starts, ends = bin_bounds(290, 7)
    assert starts.tolist() == [(i * 290) // 7 for i in range(7)]
    assert ends.tolist() == [((i + 1) * 290 + 6) // 7 for i in range(7)]


# --- auto choice, visibility, fallback ------------------------------------------------------

def test_auto_prefers_cpu_below_the_crossover_and_fft_above():
    from sincfb.backends.common import CPU_CROSSOVER_LENGTH
    assert resolve_backend("auto", "cpu", 251) == "cpu"
    assert resolve_backend("auto", "cpu", CPU_CROSSOVER_LENGTH - 2) == "cpu"
    assert resolve_backend("auto", "cpu", CPU_CROSSOVER_LENGTH) == "fft"
    layer = FusedSincFilterbank(4, 31, pool_bins=4)
    layer(torch.randn(1, 1, 200))
    assert "last ran: 'cpu'" in repr(layer)


def test_failed_build_falls_back_with_one_warning(monkeypatch):
    def broken():
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(_build, "_compile", broken)
    _build.reset()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resolve_backend("auto", "cpu", 251) == "reference"
            assert resolve_backend("auto", "cpu", 501) == "reference"
            layer = FusedSincFilterbank(3, 31, pool_bins=4)
            layer(torch.randn(1, 1, 100))
        messages = [str(w.message) for w in caught if "C++ CPU backend" in str(w.message)]
        assert len(messages) == 1 and "no compiler here" in messages[0]
        assert "last ran: 'reference'" in repr(layer)
        with pytest.raises(RuntimeError, match="not available"):
            resolve_backend("cpu", "cpu", 251)
    finally:
        monkeypatch.undo()
        _build.reset()
        assert _build.load_cpu_extension()


def test_build_cache_key_covers_sources_flags_and_compiler():
    name = _build.extension_name()
    assert name.startswith("sincfb_cpu_")
    assert name != _build.extension_name(compiler="clang++: clang version 99")
    other_isa = "baseline" if _build.instruction_set() == "avx2" else "avx2"
    assert name != _build.extension_name(isa=other_isa)
    assert "-ffast-math" not in _build.compiler_flags()
