"""The 'triton' backend on the CPU through Triton's interpreter (DESIGN.md §5), in CI, beyond the
conformance every backend runs (test_conformance.py): each kernel against its stage, the reduced
precisions, torch.compile, memory and index arithmetic, autotuning.

Every kernel output and workspace is NaN-poisoned before each launch (SINCFB_TRITON_POISON=1), so
an element a kernel fails to write cannot pass. Inputs are drawn fresh for every test. Shapes are
tiny: the interpreter runs each Triton operation as a NumPy call.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank, algebra
from sincfb.backends import FilterbankConfig, available_backends, get_backend, resolve_backend
from sincfb.backends.reference import reference_backward, reference_forward
from sincfb.filters import sinc_filters
from sincfb.pooling import bin_sums, unpack_mask
from tests.oracles import authors_bank, randomise_bank
from tests.tolerance import relative_error, tolerance

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") != "1",
    reason="interpreter tests: CPU machines only (tests/conftest.py sets TRITON_INTERPRET=1)")

tb = pytest.importorskip("sincfb.backends.triton")
tk = pytest.importorskip("sincfb.backends.triton_kernels")


@pytest.fixture(autouse=True)
def _poison_and_no_autotune(monkeypatch):
    monkeypatch.setenv("SINCFB_TRITON_POISON", "1")
    monkeypatch.setenv("SINCFB_AUTOTUNE", "0")


def _bank(K, L, P, dtype=torch.float64):
    """A randomised bank and its (low_hz_, band_hz_, weight, bias), rounded to float32 first so
    that float32 and float64 runs see exactly the same parameters."""
    bank = randomise_bank(authors_bank(K, L, P)).float().to(dtype)
    sinc, bn = bank[0], bank[1]
    params = tuple(p.detach() for p in (sinc.low_hz_, sinc.band_hz_, bn.weight, bn.bias))
    return bank, params


def _reference_z(x, params, mean, var, L):
    """z of the composite in float64 for the given statistics: (B, K, N_out)."""
    y = F.conv1d(x.double(), sinc_filters(params[0], params[1], L, 16000.0)[:, None])
    zhat = (y - mean.double()[:, None]) / torch.sqrt(var.double()[:, None] + 1e-5)
    return zhat * params[2].double()[:, None] + params[3].double()[:, None]


def _check_mask(mask_bits, z):
    """Mask bits equal z > 0 except where |z| is within float32 rounding of 0."""
    got = unpack_mask(mask_bits, z.shape[-1])
    differ = got != (z > 0)
    assert bool((z[differ].abs() < 1e-5 * z.abs().max()).all()), int(differ.sum())
    assert int(differ.sum()) <= max(2, z.numel() // 10000)


# ----------------------------------------------------------------------------- registration

def test_registered_for_cuda_and_interpreted_cpu():
    backend = get_backend("triton")
    assert backend.devices == ("cuda", "cpu")
    assert backend.available()
    assert backend.auto_priority("cuda", 251) == 10.0
    assert backend.auto_priority("cpu", 251) is None          # never chosen on the CPU
    assert "triton" in available_backends("cpu")
    assert resolve_backend("auto", "cpu", 251) != "triton"


def test_float64_input_is_delegated_to_the_reference():
    bank, params = _bank(5, 21, 9)
    cfg = FilterbankConfig(21, 16000.0, 50.0, 50.0, 9, True, 1e-5, "ieee")
    x = torch.randn(2, 1, 200, dtype=torch.float64)
    got = tb.triton_forward(x, *params, bank[1].running_mean, bank[1].running_var, cfg)
    want = reference_forward(x, *params, bank[1].running_mean, bank[1].running_var, cfg)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- building blocks

@pytest.mark.parametrize("L", [3, 11, 31, 251, 1001])
def test_filter_taps_kernel_matches_float64_formula(L):
    """Phase-reduced float32 taps agree with the float64 filters to float32 rounding, including
    bands clamped at Nyquist, negative raw parameters and the longest paper filter."""
    _, (low, band, _, _) = _bank(19, L, 7, torch.float32)
    taps = tk.filter_taps(low, band, L, 16000.0, 50.0, 50.0)
    assert taps.shape == (19, (L + 1) // 2) and taps.dtype == torch.float32
    want = sinc_filters(low, band, L, 16000.0, dtype=torch.float64)
    got = tb.full_filters(taps)
    assert (got - want).abs().max().item() < 1e-6


@pytest.mark.parametrize("B, N, L", [(2, 300, 31), (1, 200, 11), (3, 90, 51), (2, 40, 3)])
def test_window_moments_match_the_algebra(B, N, L):
    x = torch.randn(B, 1, N)
    sums, gram = algebra.window_moments(x[:, 0], L)
    torch.testing.assert_close(sums, algebra.window_sums(x, L), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(gram, algebra.window_gram(x, L), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("B, N, L", [(2, 300, 31), (1, 60, 31), (3, 150, 51)])
def test_cheap_input_gradient_terms_match_the_algebra(B, N, L):
    """tap sums (c3) and the exact R-filter term with edge corrections (c4), N < 2L included."""
    K, n_out = 4, N - L + 1
    x = torch.randn(B, 1, N)
    g = torch.randn(K, L, dtype=torch.float64)
    g = g + g.flip(-1)
    c3, c4 = torch.randn(K, dtype=torch.float64), torch.randn(K, dtype=torch.float64)
    dz = torch.zeros(B, K, n_out, dtype=torch.float64)
    want = algebra.input_gradient(x, dz, g, torch.zeros(K, dtype=torch.float64), c3, c4)[:, 0]
    got = algebra.tap_sums(g, c3, n_out, N)[None] - algebra.autocorrelation_term(x[:, 0], g, c4, n_out)
    assert relative_error(got, want) < 1e-12


STAGE_SHAPES = [(2, 300, 20, 31, 13), (1, 200, 5, 11, 200 - 11 + 1), (3, 150, 17, 8, 6)]


@pytest.mark.parametrize("B, N, K, L, P", STAGE_SHAPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_kernels_stage_by_stage(B, N, K, L, P, training):
    """Each kernel against its DESIGN §3 stage: forward outputs and saved data against the
    reference at full resolution (mask bits exactly), the filter-gradient product against
    conv1d_weight of dz, the transposed product against conv_transpose1d of dz."""
    L = L + (L % 2 == 0)
    bank, params = _bank(K, L, P)
    cfg = FilterbankConfig(L, 16000.0, 50.0, 50.0, P, training, 1e-5, "ieee")
    x = torch.randn(B, 1, N)
    params32 = tuple(p.float() for p in params)
    rm, rv = bank[1].running_mean.float(), bank[1].running_var.float()
    out, mean, var, mask_bits, bin_stats = tb.triton_forward(x, *params32, rm, rv, cfg)
    ref = reference_forward(x.double(), *params, rm.double(), rv.double(), cfg)
    tol = tolerance(torch.float32)
    assert relative_error(out, ref[0]) < tol
    assert relative_error(mean, ref[1]) < tol or (mean - ref[1]).abs().max() < 1e-6
    assert relative_error(var, ref[2]) < tol
    _check_mask(mask_bits, _reference_z(x, params, ref[1], ref[2], L))
    # counts are exact and agree with the kernel's own mask bits
    assert torch.equal(bin_stats[0].double(), bin_sums(unpack_mask(mask_bits, N - L + 1), P))
    assert relative_error(bin_stats[1], ref[4][1]) < tol

    lay = tk.Layout(B, K, N, L, P)
    n_out = lay.N_out
    weights = torch.randn(B, K, P)
    dz = algebra.relu_mask_gradient(weights.double(), mask_bits, n_out)
    x_pad = tb._padded_input(x, lay)
    corr = tk.filter_correlation(x_pad, weights, mask_bits, lay, "ieee", poison=True)
    want = torch.nn.grad.conv1d_weight(x.double(), (K, 1, L), dz)[:, 0]
    folded = algebra.fold_taps(want)
    folded[:, -1] *= 2                   # the kernel folds the centre window twice (_centre_once)
    assert relative_error(corr, folded) < tol
    taps = tk.filter_taps(*params32[:2], L, 16000.0, 50.0, 50.0)
    packed = tb._pack_taps(taps, None, lay, "ieee")
    heavy = tk.transposed_product(packed, weights, mask_bits, lay, "ieee", poison=True)
    want = F.conv_transpose1d(dz, tb.full_filters(taps)[:, None])[:, 0]
    assert relative_error(heavy, want) < tol


def test_mask_bits_of_a_ragged_tail_are_zero():
    """Positions past N_out in the last byte are 0 bits, exactly as pack_mask writes them."""
    bank, params = _bank(6, 15, 5)
    cfg = FilterbankConfig(15, 16000.0, 50.0, 50.0, 5, True, 1e-5, "ieee")
    x = torch.randn(1, 1, 15 + 96)                  # N_out = 97: one bit in the last byte
    params32 = tuple(p.float() for p in params)
    _, mean, var, mask_bits, _ = tb.triton_forward(x, *params32, None, None, cfg)
    assert mask_bits.shape == (1, 6, 13)
    assert torch.equal(mask_bits[..., -1] & 0xFE, torch.zeros_like(mask_bits[..., -1]))
    _check_mask(mask_bits, _reference_z(x, params, mean, var, 15))


# ----------------------------------------------------------------------------- the whole layer

@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_paths(precision):
    """tf32 and bf16 run the same kernels with operands rounded as the tensor cores round them
    (emulated under the interpreter). The forward is compared end to end; the gradients at the
    saved data (same mask bits), since a reduced-precision forward flips some ReLU decisions and
    each flip moves a gradient by a full bin weight (DESIGN §4's bounds concern the arithmetic)."""
    B, N, K, L, P = 2, 1200, 16, 63, 32
    bank, params = _bank(K, L, P)
    cfg = FilterbankConfig(L, 16000.0, 50.0, 50.0, P, True, 1e-5, precision)
    x = torch.randn(B, 1, N)
    params32 = tuple(p.float() for p in params)
    rm, rv = bank[1].running_mean.float(), bank[1].running_var.float()
    fwd = tb.triton_forward(x, *params32, rm, rv, cfg)
    ref = reference_forward(x.double(), *params, rm.double(), rv.double(), cfg)
    forward_tol = tolerance(torch.float32, precision)
    assert relative_error(fwd[0], ref[0]) < forward_tol
    grad = torch.randn(B, K, P)
    got = tb.triton_backward(grad, x, *params32, *fwd[1:], cfg)
    want = reference_backward(grad.double(), x.double(), *params, fwd[1].double(),
                              fwd[2].double(), fwd[3], fwd[4].double(), cfg)
    for name, a, b in zip(("x", "low_hz_", "band_hz_", "weight", "bias"), got, want):
        assert relative_error(a, b) < 3 * forward_tol, name   # the margin this test has had


def test_torch_compile_fullgraph_under_the_interpreter():
    torch.manual_seed(0)
    eager = randomise_bank(FusedSincFilterbank(6, 21, pool_bins=10, backend="triton",
                                               precision="ieee"))
    layer = FusedSincFilterbank(6, 21, pool_bins=10, backend="triton", precision="ieee")
    layer.load_state_dict(eager.state_dict())
    compiled = torch.compile(layer, fullgraph=True)
    x = torch.randn(2, 1, 150)
    results = []
    for module, fn in ((eager, eager), (layer, compiled)):
        xi = x.clone().requires_grad_()
        out = fn(xi)
        out.square().sum().backward()
        results.append((out.detach(), xi.grad, module.sinc.band_hz_.grad,
                        module.batch_norm.running_var.clone()))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- memory and indexing

def test_no_tensor_of_full_resolution_is_allocated():
    """Every tensor created by torch ops during a forward and backward (kernel outputs,
    workspaces, the float64 helpers) holds fewer than B K N_out / 2 elements."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0
        # the interpreter re-wraps every kernel argument's storage as raw bytes (set_, copy_):
        # aliases of buffers counted when they were created, not allocations
        aliases = (torch.ops.aten.set_, torch.ops.aten.copy_)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if func.overloadpacket in self.aliases:
                return result
            for t in (result if isinstance(result, (tuple, list)) else (result,)):
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return result

    B, N, K, L, P = 2, 1400, 20, 15, 8
    bank, params = _bank(K, L, P, torch.float32)
    cfg = FilterbankConfig(L, 16000.0, 50.0, 50.0, P, True, 1e-5, "ieee")
    x = torch.randn(B, 1, N)
    with Largest():
        fwd = tb.triton_forward(x, *params, None, None, cfg)
        tb.triton_backward(torch.randn(B, K, P), x, *params, *fwd[1:], cfg)
    full = B * K * (N - L + 1)
    assert 0 < Largest.numel < full / 2, (Largest.numel, full)


def test_offsets_are_int64_beyond_two_to_the_31():
    """The offset helpers every kernel uses for (B, K, width) tensors and row starts compute in
    int64: run them on index values of a batch whose mask bits exceed 2^32 bytes (B = 8192 clips,
    K = 160, 5875 bytes per row) and compare with exact integer arithmetic. Allocating such a
    batch is left to the GPU test; here the arithmetic is what is checked."""
    import triton
    import triton.language as tl

    @triton.jit
    def offsets(b_ptr, k_ptr, i_ptr, out_ptr, row_ptr, K, W):
        r = tl.arange(0, 8)
        b = tl.load(b_ptr + r)
        tl.store(out_ptr + r, tk._clip_filter_offset(b, tl.load(k_ptr + r), tl.load(i_ptr + r),
                                                     K, W))
        tl.store(row_ptr + r, tk._row64(b, W * K))

    K, W = 160, 5875
    b = torch.tensor([0, 1, 2284, 2285, 4096, 8190, 8191, 8191], dtype=torch.int32)
    k = torch.tensor([0, 159, 17, 0, 80, 159, 158, 159], dtype=torch.int32)
    i = torch.tensor([0, 5874, 3, 0, 100, 5874, 5874, 5874], dtype=torch.int32)
    out = torch.zeros(8, dtype=torch.int64)
    rows = torch.zeros(8, dtype=torch.int64)
    offsets[(1,)](b, k, i, out, rows, K, W)
    want = [(int(bb) * K + int(kk)) * W + int(ii) for bb, kk, ii in zip(b, k, i)]
    assert max(want) > 2 ** 32
    assert out.tolist() == want
    assert rows.tolist() == [int(bb) * W * K for bb in b]


def test_autotune_switch_and_pruning(monkeypatch):
    assert not tk.autotune_enabled()           # the interpreter never autotunes
    monkeypatch.setenv("SINCFB_AUTOTUNE", "0")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not tk.autotune_enabled()
    monkeypatch.setenv("SINCFB_AUTOTUNE", "1")
    assert tk.autotune_enabled()
    # the device is asked at each pruning: a stand-in limit and stand-in compiled needs
    need = {id(c): 1000 * (i + 1) for i, c in enumerate(tk._all_configs(tk.FWD_CONFIGS))}
    monkeypatch.setattr(tk, "shared_memory_need", lambda kernel, c, args, meta: need[id(c)])
    monkeypatch.setattr(tk, "device_shared_memory", lambda: 10 ** 9)
    everything = tk._all_configs(tk.FWD_CONFIGS)

    def prune(C, KA, KB, HAS_KB, precision):
        return tk.prune_configs(tk.FWD_CONFIGS, tk._fwd_kernel, everything, {"C": C}, KA=KA,
                                KB=KB, HAS_KB=HAS_KB, PREC=tk.PREC_CODE[precision])

    for precision in ("bf16", "tf32", "ieee"):
        kept = prune(501, 128, 32, True, precision)
        assert kept == tk.FWD_CONFIGS[precision]
    short = prune(20, 16, 16, False, "bf16")
    assert short and all(c.kwargs["BJ"] <= 32 for c in short)
    # a smaller device: configs needing more shared memory are never tried
    limit = sorted(need[id(c)] for c in tk.FWD_CONFIGS["bf16"])[1]
    monkeypatch.setattr(tk, "device_shared_memory", lambda: limit)
    kept = prune(501, 128, 32, True, "bf16")
    assert kept and all(need[id(c)] <= limit for c in kept)
    assert len(kept) == 2
    monkeypatch.setattr(tk, "device_shared_memory", lambda: 10)
    with pytest.raises(RuntimeError, match="fits the device's 10 bytes of shared memory"):
        prune(501, 128, 32, True, "bf16")


@pytest.mark.parametrize("K, split", [(5, (16, 16, False, 1)), (20, (16, 16, True, 1)),
                                      (128, (128, 16, False, 1)), (160, (128, 32, True, 1)),
                                      (200, (128, 128, True, 1)), (300, (128, 128, True, 2))])
def test_filter_split(K, split):
    assert tk.filter_split(K) == split
