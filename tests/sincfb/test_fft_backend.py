"""The 'fft' backend (sincfb/backends/fft.py) beyond the conformance every backend runs on every
device (test_conformance.py): its plain tensor-op path (what CUDA runs) against the authors'
composite on the CPU (DESIGN.md §4), chunking over filters, poisoned allocations, the spectral
helpers, and the 'auto' ranking it encodes."""
import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank, algebra
from sincfb.backends import fft as fft_backend
from sincfb.backends import resolve_backend
from sincfb.backends.common import CPU_CROSSOVER_LENGTH
from sincfb.backends.cpu import auto_priority_cpu_direct
from tests.oracles import randomise_bank
from tests.sincfb.conformance import SHAPES, Shape, check_against_composite, poison_allocations
from tests.tolerance import relative_error, tolerance

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES[:4], ids=str)
def test_plain_torch_path_matches_composite(monkeypatch, shape, training):
    """The tensor-op path, chunked over filters (what CUDA runs), not the C++ kernels."""
    monkeypatch.setattr(fft_backend, "USE_CPP_KERNELS", False)
    check_against_composite("fft", shape, training, torch.float64, steps=1)
    check_against_composite("fft", shape, training, torch.float32, steps=1)


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
    check_against_composite("fft", shape, training, steps=1)
    assert max(largest) <= 2 * shape.batch


def test_tensor_op_allocations_are_fully_written(monkeypatch):
    """Tensor-op path: every tensor allocated with new_empty starts as NaN / 0xFF (the C++ path:
    test_conformance.py)."""
    monkeypatch.setattr(fft_backend, "USE_CPP_KERNELS", False)
    poison_allocations(monkeypatch)
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
    tol = tolerance(torch.float64, same_terms=True)
    for name, a, b in zip(("out", "mean", "var"), got[:3], want[:3]):
        assert relative_error(a, b) <= tol, name
    assert torch.equal(got[3], want[3])
    assert torch.equal(got[4][0], want[4][0]) and relative_error(got[4][1], want[4][1]) <= tol


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

@CUDA
@pytest.mark.cuda
def test_cuda_auto_ranks_fft_between_triton_and_reference():
    assert resolve_backend("auto", "cuda", 8001) in ("triton", "fft")
