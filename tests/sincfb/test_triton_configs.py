"""Every tile configuration of every Triton kernel, executed on the CPU under the interpreter.

The GPU's autotuner picks among ``FWD_CONFIGS``, ``CORR_CONFIGS``, ``DX_CONFIGS`` and their 'ieee'
lists, while the other interpreter tests run one small tile (``INTERP_*``). Here each kernel runs
with each configuration of its lists (the block sizes are what the interpreter honours; warps and
stages are the GPU's business), on the GPU's tap padding (``TAP_ALIGN``), on shapes whose edges
fall inside tiles: N_out not a multiple of any position tile, P not dividing N_out (bins straddle
tiles and chunks), K not a multiple of the filter group, and folded taps C = 129 (one tap past a
128-tap block: the padding limit) or C = 128 (exactly one block). Each is compared with the
float64 reference at DESIGN §4's tolerance for the precision the list serves ('tf32' for the
tensor-core lists: its bound is the tighter of the two reduced precisions; 'ieee' for the FMA
lists; bf16-only configs in bf16). Outputs and workspaces are NaN-poisoned, so an element a tile
misses fails.

The larger sweep (two more shapes) is marked slow and runs only with SINCFB_FULL_SWEEP=1: CI runs
every test, slow ones included, within its 20-minute budget.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from sincfb import algebra
from sincfb.backends import FilterbankConfig
from sincfb.backends.reference import reference_forward
from sincfb.filters import sinc_filters
from sincfb.pooling import bin_sums, unpack_mask
from tests.tolerance import relative_error
from tests.sincfb.test_triton_backend import _bank

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") != "1",
    reason="interpreter tests: CPU machines only (tests/conftest.py sets TRITON_INTERPRET=1)")

tb = pytest.importorskip("sincfb.backends.triton")
tk = pytest.importorskip("sincfb.backends.triton_kernels")

TOL = {"ieee": 1e-5, "tf32": 1e-3, "bf16": 1e-2}      # DESIGN.md §4
# (B, K, L, N_out, P): the default sweep's two shapes, then the slow sweep's extra ones
SHAPES = [(1, 20, 257, 301, 37),      # K = 20 in 16 + 16 slots, C = 129, bins of 9-10 positions
          (2, 150, 255, 203, 203)]    # K = 150 in 128 + 32 slots, C = 128, one position per bin
SLOW_SHAPES = [(3, 5, 31, 517, 64),   # one 16-filter group, 2-3 position tiles per program
               (2, 17, 1001, 130, 7)]  # the paper's longest filter (C = 501), bins of 19-20


def _sweep(table):
    """(config, precision) pairs: every config of every precision's list, run in that precision
    (bf16 and tf32 run the same code under the interpreter; tf32 has the tighter bound, so a
    config on both lists runs once, in tf32)."""
    pairs, seen = [], set()
    for precision in ("tf32", "bf16", "ieee"):
        for c in table[precision]:
            if id(c) not in seen:
                seen.add(id(c))
                pairs.append(pytest.param(c, precision, id=f"{precision}-{_name(c)}"))
    return pairs


def _name(config):
    return "-".join(f"{k}{v}" for k, v in config.kwargs.items())


def _shapes():
    full = os.environ.get("SINCFB_FULL_SWEEP") == "1"
    slow = [pytest.param(*s, marks=[pytest.mark.slow,
                                    pytest.mark.skipif(not full, reason="SINCFB_FULL_SWEEP=1")],
                         id="x".join(map(str, s))) for s in SLOW_SHAPES]
    return [pytest.param(*s, id="x".join(map(str, s))) for s in SHAPES] + slow


@pytest.fixture(autouse=True)
def _poisoned_fixed_config_seeded(monkeypatch):
    monkeypatch.setenv("SINCFB_TRITON_POISON", "1")
    monkeypatch.setenv("SINCFB_AUTOTUNE", "0")
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed {seed}")
    torch.manual_seed(seed)


@pytest.mark.parametrize("B, K, L, n_out, P", _shapes())
@pytest.mark.parametrize("config, precision", _sweep(tk.FWD_CONFIGS))
def test_forward_kernel_config(monkeypatch, config, precision, B, K, L, n_out, P):
    """Pooled output, batch statistics, mask bits and per-bin sums against the float64 reference."""
    monkeypatch.setattr(tk, "INTERP_FWD", config)
    bank, params = _bank(K, L, P)
    cfg = FilterbankConfig(L, 16000.0, 50.0, 50.0, P, True, 1e-5, precision)
    x = torch.randn(B, 1, n_out + L - 1)
    params32 = tuple(p.float() for p in params)
    out, mean, var, mask_bits, bin_stats = tb.triton_forward(x, *params32, None, None, cfg)
    ref = reference_forward(x.double(), *params, None, None, cfg)
    tol = TOL[precision]
    assert relative_error(out, ref[0]) < tol
    assert relative_error(var, ref[2]) < tol
    zhat = _reference_zhat(x, params, ref[1], ref[2], L)
    z = zhat * params[2].double()[:, None] + params[3].double()[:, None]
    got = unpack_mask(mask_bits, n_out)
    differ = got != (z > 0)                          # only where |z| is within rounding of 0
    assert bool((z[differ].abs() < 10 * tol * z.abs().max()).all()), int(differ.sum())
    assert torch.equal(mask_bits[..., -1] >> (n_out - 8 * (mask_bits.shape[-1] - 1)),
                       torch.zeros_like(mask_bits[..., -1]))      # bits past N_out are 0
    assert torch.equal(bin_stats[0].double(), bin_sums(got, P))
    # the zhat sums over the kernel's own mask (a flipped decision moves a sum by a whole zhat)
    assert relative_error(bin_stats[1], bin_sums(torch.where(got, zhat, 0.0), P)) < tol


def _reference_zhat(x, params, mean, var, L):
    """zhat = (y - mean) / sqrt(var + eps) of the composite in float64: (B, K, N_out)."""
    y = F.conv1d(x.double(), sinc_filters(params[0], params[1], L, 16000.0)[:, None])
    return (y - mean.double()[:, None]) / torch.sqrt(var.double()[:, None] + 1e-5)


def _saved(B, K, L, n_out, P):
    """Random (x, per-bin weights, mask bits with garbage past N_out) and their layout: the
    backward kernels' inputs, any bit pattern being legal."""
    lay = tk.Layout(B, K, n_out + L - 1, L, P)
    x = torch.randn(B, 1, lay.N)
    weights = torch.randn(B, K, P)
    mask_bits = torch.randint(0, 256, (B, K, lay.W), dtype=torch.uint8)
    dz = algebra.relu_mask_gradient(weights.double(), mask_bits, n_out)
    return lay, x, weights, mask_bits, dz


@pytest.mark.parametrize("B, K, L, n_out, P", _shapes())
@pytest.mark.parametrize("config, precision", _sweep(tk.CORR_CONFIGS))
def test_filter_correlation_kernel_config(monkeypatch, config, precision, B, K, L, n_out, P):
    """The filter-gradient product against conv1d_weight of dz in float64."""
    monkeypatch.setattr(tk, "INTERP_CORR", config)
    lay, x, weights, mask_bits, dz = _saved(B, K, L, n_out, P)
    corr = tk.filter_correlation(tb._padded_input(x, lay), weights, mask_bits, lay, precision,
                                 poison=True)
    want = algebra.fold_taps(torch.nn.grad.conv1d_weight(x.double(), (K, 1, L), dz)[:, 0])
    want[:, -1] *= 2                     # the kernel folds the centre window twice (_centre_once)
    assert relative_error(corr, want) < TOL[precision]


@pytest.mark.parametrize("B, K, L, n_out, P", _shapes())
@pytest.mark.parametrize("config, precision", _sweep(tk.DX_CONFIGS))
def test_transposed_product_kernel_config(monkeypatch, config, precision, B, K, L, n_out, P):
    """The input gradient's heavy product against conv_transpose1d of dz in float64."""
    monkeypatch.setattr(tk, "INTERP_DX", config)
    lay, _, weights, mask_bits, dz = _saved(B, K, L, n_out, P)
    _, (low, band, _, _) = _bank(K, L, P, torch.float32)
    taps = tk.filter_taps(low, band, L, 16000.0, 50.0, 50.0)
    got = tk.transposed_product(tb._pack_taps(taps, None, lay, precision), weights, mask_bits,
                                lay, precision, poison=True)
    want = F.conv_transpose1d(dz, tb.full_filters(taps)[:, None])[:, 0]
    assert relative_error(got, want) < TOL[precision]
