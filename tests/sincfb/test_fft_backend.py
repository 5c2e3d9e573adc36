"""The 'fft' backend (sincfb/backends/fft.py): conformance with the authors' composite
(DESIGN.md §4) on CPU (and CUDA when present), chunking over filters, the spectral helpers, and
the 'auto' ranking it encodes."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

from sincfb import FusedSincFilterbank, algebra
from sincfb.backends import fft as fft_backend
from sincfb.backends import resolve_backend
from sincfb.backends.common import CPU_CROSSOVER_LENGTH
from sincfb.backends.cpu import auto_priority_cpu_direct
from tests.oracles import authors_bank, randomise_bank
from tests.sincfb.conformance import SHAPES, Shape, check_against_composite, relative_error
from tests.seeds import examples

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float64_matches_composite(shape, training):
    check_against_composite("fft", shape, training, torch.float64, tol=1e-9)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float32_within_ieee_tolerance(shape, training):
    check_against_composite("fft", shape, training, torch.float32, tol=1e-5)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES[:4], ids=str)
def test_plain_torch_path_matches_composite(monkeypatch, shape, training):
    """The tensor-op path, chunked over filters (what CUDA runs), not the C++ kernels."""
    monkeypatch.setattr(fft_backend, "USE_CPP_KERNELS", False)
    check_against_composite("fft", shape, training, torch.float64, tol=1e-9, steps=1)
    check_against_composite("fft", shape, training, torch.float32, tol=1e-5, steps=1)


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 3), channels=st.integers(1, 9), kernel_size=st.integers(3, 120),
       n_out=st.integers(2, 600), data=st.data())
def test_random_shapes(batch, channels, kernel_size, n_out, data):
    """Odd and even L, B=1, P anywhere in [1, N_out] (mostly not dividing it)."""
    L = kernel_size + (kernel_size % 2 == 0)
    shape = Shape(batch, L + n_out - 1, channels, kernel_size, data.draw(st.integers(1, n_out)))
    # float64: this checks the algorithm on awkward shapes. Random float32 cases are left out
    # on purpose: with one filter whose band is clamped at Nyquist, grad low_hz_ is a single
    # ill-conditioned number, and even the float32 reference backend reaches ~1e-5 on it.
    check_against_composite("fft", shape, data.draw(st.booleans()), torch.float64, tol=1e-9,
                            steps=1, seed=data.draw(st.integers(0, 2**20)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(training, dtype):
    layer = randomise_bank(FusedSincFilterbank(6, 21, pool_bins=13)).to(dtype)
    bn = layer.batch_norm
    x = torch.randn(2, 1, 150, dtype=dtype, requires_grad=True)
    args = (x, layer.sinc.low_hz_, layer.sinc.band_hz_, bn.weight, bn.bias, bn.running_mean,
            bn.running_var, 21, 16000.0, 50.0, 50.0, 13, training, bn.eps, "fft", "ieee")
    torch.library.opcheck(torch.ops.sincfb.filterbank.default, args)


@pytest.mark.parametrize("training", [True, False])
def test_chunks_bound_memory_and_join_exactly(monkeypatch, training):
    """With a tiny chunk budget the filters go 2 at a time; no transform sees all K filters, and
    the results still match the composite (chunk boundaries are exact)."""
    shape = Shape(2, 700, 7, 51, 9)
    n_fft = algebra.fast_fft_length(shape.samples)
    monkeypatch.setattr(fft_backend, "USE_CPP_KERNELS", False)    # the C++ path goes per filter
    monkeypatch.setattr(fft_backend, "CHUNK_ELEMENTS", 2 * shape.batch * n_fft)
    largest = []
    irfft = torch.fft.irfft

    def recording_irfft(values, *args, **kwargs):
        largest.append(values.shape[:-1].numel())
        return irfft(values, *args, **kwargs)

    monkeypatch.setattr(torch.fft, "irfft", recording_irfft)
    check_against_composite("fft", shape, training, tol=1e-9, steps=1)
    assert max(largest) <= 2 * shape.batch


def test_backend_allocations_are_fully_written(monkeypatch):
    """Tensor-op path: every tensor allocated with new_empty starts as NaN / 0xFF."""
    monkeypatch.setattr(fft_backend, "USE_CPP_KERNELS", False)
    original = torch.Tensor.new_empty

    def poisoned_new_empty(self, *size, **kwargs):
        t = original(self, *size, **kwargs)
        return t.fill_(255) if t.dtype == torch.uint8 else t.fill_(float("nan"))

    monkeypatch.setattr(torch.Tensor, "new_empty", poisoned_new_empty)
    for training in (True, False):
        check_against_composite("fft", Shape(2, 500, 5, 31, 7), training, steps=1)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("B, N, K, L, P", [(2, 3000, 5, 31, 17), (1, 1200, 3, 101, 1),
                                           (2, 1500, 4, 11, 1490)])
def test_saved_data_equals_the_reference(B, N, K, L, P, training):
    """Every output of the forward (the C++ path on the CPU), mask padding bits included, against
    the reference backend in float64: nothing left unwritten."""
    layer = randomise_bank(FusedSincFilterbank(K, L, pool_bins=P)).double()
    bn = layer.batch_norm
    x = torch.randn(B, 1, N, dtype=torch.float64)
    args = (x, layer.sinc.low_hz_, layer.sinc.band_hz_, bn.weight, bn.bias, bn.running_mean,
            bn.running_var, L, 16000.0, 50.0, 50.0, P, training, bn.eps)
    got = torch.ops.sincfb.filterbank(*args, "fft", "ieee")
    want = torch.ops.sincfb.filterbank(*args, "reference", "ieee")
    for name, a, b in zip(("out", "mean", "var"), got[:3], want[:3]):
        assert relative_error(a, b) < 1e-12, name
    assert torch.equal(got[3], want[3])
    assert torch.equal(got[4][0], want[4][0]) and relative_error(got[4][1], want[4][1]) < 1e-12


# --- spectral helpers (shared with the 'cpu' backend) ----------------------------------------

def test_fast_fft_length_is_the_smallest_5_smooth_length():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in list(range(1, 400)) + [48000, 48001, 49999, 100003]:
        m = algebra.fast_fft_length(n)
        assert m >= n and smooth(m)
        assert not any(smooth(k) for k in range(n, m))


def test_autocorrelation_and_toeplitz_product():
    x = torch.randn(3, 200, dtype=torch.float64)
    L = 21
    r = algebra.autocorrelation_sums(x, L)
    want = torch.stack([(x[:, : 200 - d] * x[:, d:]).sum() for d in range(L)])
    torch.testing.assert_close(r, want)
    g = torch.randn(4, L, dtype=torch.float64)
    index = torch.arange(L)
    toeplitz = r[(index[:, None] - index[None]).abs()]
    torch.testing.assert_close(algebra.toeplitz_product(g, r), g @ toeplitz)


def test_filter_autocorrelation_and_centred_correlation():
    g = torch.randn(3, 9, dtype=torch.float64)
    coef = torch.randn(3, dtype=torch.float64)
    lags = (coef[:, None] * algebra.filter_autocorrelations(g)).sum(0)
    R = algebra.weighted_filter_autocorrelation(g, coef)                      # d = -(L-1)..L-1
    torch.testing.assert_close(torch.cat([lags.flip(0)[:-1], lags]), R)
    x = torch.randn(2, 50, dtype=torch.float64)
    h = torch.randn(17, dtype=torch.float64)
    want = F.conv1d(F.pad(x[:, None], (8, 8)), h.view(1, 1, -1))[:, 0]
    torch.testing.assert_close(algebra.convolve_same_length(x, h), want)


# --- 'auto' ranking -----------------------------------------------------------------------

def test_auto_ranking():
    crossover = CPU_CROSSOVER_LENGTH
    assert fft_backend.auto_priority_fft("cpu", crossover - 2) is None
    assert fft_backend.auto_priority_fft("cpu", crossover) < auto_priority_cpu_direct(
        "cpu", crossover)
    assert auto_priority_cpu_direct("cpu", 251) < 100
    assert 10 < fft_backend.auto_priority_fft("cuda", 251) < 100   # after triton, before reference
    assert auto_priority_cpu_direct("cuda", 251) is None
    assert resolve_backend("auto", "cpu", 8001) == "fft"


def test_crossover_is_where_fft_wins_from_then_on():
    from bench.crossover import crossover_length
    times = {251: (1.0, 2.0), 501: (2.0, 1.9), 751: (3.0, 3.5), 1001: (4.0, 2.0), 2001: (8, 2)}
    rows = [{"length": L, "backend": b, "median_s": t}
            for L, pair in times.items() for b, t in zip(("cpu", "fft"), pair)]
    result = crossover_length(rows)
    assert result["first_measured_length"] == 1001      # 501 wins, but 751 loses again
    assert 751 < result["interpolated_length"] <= 1001
    assert crossover_length([r for r in rows if r["length"] == 251]) is None


def test_auto_runs_fft_for_long_filters_and_says_so():
    L = CPU_CROSSOVER_LENGTH
    layer = FusedSincFilterbank(2, L, pool_bins=4)
    x = torch.randn(1, 1, L + 50, requires_grad=True)
    layer(x).sum().backward()
    assert "last ran: 'fft'" in repr(layer) and x.grad is not None


# --- CUDA ---------------------------------------------------------------------------------

def _cuda_against_composite(shape, training, dtype, tol):
    """check_against_composite compares on one device; here the fused layer runs on CUDA and the
    float64 composite on the CPU, and everything is compared on the CPU."""
    oracle = authors_bank(shape.channels, shape.kernel_size, shape.pool_bins)
    oracle = randomise_bank(oracle).double()
    fused = FusedSincFilterbank(shape.channels, shape.kernel_size, pool_bins=shape.pool_bins,
                                backend="fft").to(device="cuda", dtype=dtype)
    fused.load_state_dict(oracle.state_dict())
    oracle.load_state_dict(fused.state_dict())
    fused.train(training), oracle.train(training)
    x64 = torch.randn(shape.batch, 1, shape.samples, dtype=torch.float64, requires_grad=True)
    x = x64.detach().to(device="cuda", dtype=dtype).requires_grad_()
    out, want = fused(x), oracle(x64)
    grad = torch.randn(want.shape, dtype=torch.float64)
    out.backward(grad.to(device="cuda", dtype=dtype))
    want.backward(grad)
    pairs = [(out, want), (x.grad, x64.grad), (fused.sinc.low_hz_.grad, oracle[0].low_hz_.grad),
             (fused.sinc.band_hz_.grad, oracle[0].band_hz_.grad),
             (fused.batch_norm.weight.grad, oracle[1].weight.grad),
             (fused.batch_norm.bias.grad, oracle[1].bias.grad),
             (fused.batch_norm.running_var, oracle[1].running_var)]
    for got, expected in pairs:
        assert relative_error(got.cpu(), expected) <= tol


@CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cuda_matches_composite(shape, training):
    _cuda_against_composite(shape, training, torch.float32, 1e-5)
    _cuda_against_composite(shape, training, torch.float64, 1e-9)


@CUDA
@pytest.mark.cuda
def test_cuda_auto_ranks_fft_between_triton_and_reference():
    assert resolve_backend("auto", "cuda", 8001) in ("triton", "fft")
