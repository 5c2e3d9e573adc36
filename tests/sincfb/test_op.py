"""The registered operation: its saved data, torch.compile, autocast, meta tensors, keep_saved
(opcheck of every backend: test_conformance.py; the argument declaration: test_arguments.py)."""
import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank
from sincfb.arguments import OpInputs
from sincfb.pooling import bin_bounds, bin_sums, pack_mask, spread_bins, unpack_mask
from tests.oracles import authors_bank, randomise_bank
from tests.tolerance import relative_error, tolerance


def op_args(layer, x, training, backend="reference", precision="ieee", keep_saved=True):
    """The op's inputs for ``layer`` and ``x``, by name (sincfb.arguments)."""
    bn = layer.batch_norm
    return tuple(OpInputs(x=x, low_hz_=layer.sinc.low_hz_, band_hz_=layer.sinc.band_hz_,
                          weight=bn.weight, bias=bn.bias, running_mean=bn.running_mean,
                          running_var=bn.running_var, kernel_size=layer.kernel_size,
                          sample_rate=16000.0, min_low_hz=50.0, min_band_hz=50.0,
                          pool_bins=layer.pool_bins, training=training, eps=bn.eps,
                          backend=backend, precision=precision, keep_saved=keep_saved))


def test_saved_data_describes_the_relu_mask_and_bins():
    """mask_bits, bin counts and bin sums of zhat agree with the composite's intermediates."""
    oracle = randomise_bank(authors_bank(5, 31, 9)).double()
    layer = FusedSincFilterbank(5, 31, pool_bins=9).double()
    layer.load_state_dict(oracle.state_dict())
    x = torch.randn(2, 1, 260, dtype=torch.float64)
    out, mean, var, mask_bits, bin_stats = torch.ops.sincfb.filterbank(*op_args(layer, x, True))
    y = oracle[0](x)
    want_mean, want_var = y.mean((0, 2)), y.var((0, 2), unbiased=False)
    zhat = (y - want_mean[:, None]) / torch.sqrt(want_var[:, None] + 1e-5)
    z = zhat * oracle[1].weight[:, None] + oracle[1].bias[:, None]
    tol = tolerance(torch.float64, same_terms=True)
    assert relative_error(mean, want_mean) <= tol and relative_error(var, want_var) <= tol
    assert torch.equal(unpack_mask(mask_bits, y.shape[-1]), z > 0)
    assert torch.equal(bin_stats[0].double(), bin_sums(z > 0, 9))
    assert relative_error(bin_stats[1], bin_sums(torch.where(z > 0, zhat, 0), 9)) < 1e-6
    assert relative_error(out, F.adaptive_avg_pool1d(F.relu(z), 9)) <= tol


@pytest.mark.parametrize("training", [True, False])
def test_torch_compile_fullgraph_matches_eager(training):
    torch.manual_seed(0)
    eager = randomise_bank(FusedSincFilterbank(6, 21, pool_bins=10))
    compiled_layer = FusedSincFilterbank(6, 21, pool_bins=10)
    compiled_layer.load_state_dict(eager.state_dict())
    eager.train(training), compiled_layer.train(training)
    compiled = torch.compile(compiled_layer, fullgraph=True)
    x = torch.randn(3, 1, 200)
    for layer, fn in ((eager, eager), (compiled_layer, compiled)):
        xi = x.clone().requires_grad_()
        out = fn(xi)
        out.pow(2).sum().backward()
        layer.result = (out.detach(), xi.grad, layer.sinc.low_hz_.grad, layer.batch_norm.weight.grad)
    for a, b in zip(eager.result, compiled_layer.result):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eager.batch_norm.running_var, compiled_layer.batch_norm.running_var)


@pytest.mark.parametrize("length", [1, 7, 8, 9, 64, 1001])
def test_mask_packing_round_trips(length):
    mask = torch.rand(3, 4, length) > 0.5
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 4, (length + 7) // 8)
    assert torch.equal(unpack_mask(packed, length), mask)
    assert int(packed[0, 0, 0]) == sum(int(mask[0, 0, i]) << i for i in range(min(8, length)))


@pytest.mark.parametrize("length, bins", [(10, 3), (47, 47), (100, 7), (1000, 1)])
def test_bins_follow_adaptive_avg_pool(length, bins):
    starts, ends = bin_bounds(length, bins)
    values = torch.randn(2, length, dtype=torch.float64)
    want = F.adaptive_avg_pool1d(values[:, None], bins)[:, 0]
    torch.testing.assert_close(bin_sums(values, bins) / (ends - starts), want)
    # spread_bins is the adjoint of bin_sums: <bin_sums(v), w> == <v, spread_bins(w)>
    w = torch.randn(2, bins, dtype=torch.float64)
    torch.testing.assert_close((bin_sums(values, bins) * w).sum(), (values * spread_bins(w, length)).sum())


def test_autocast_does_not_leak_into_the_op():
    """Under CPU bf16 autocast the op keeps its schema's dtypes and its backward runs."""
    layer = FusedSincFilterbank(4, 15, pool_bins=8, backend="reference")
    x = torch.randn(2, 1, 120, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(layer.sinc.low_hz_.grad).all()


def test_meta_tensors_propagate_shapes():
    layer = FusedSincFilterbank(4, 15, pool_bins=8).to("meta")
    out = layer(torch.empty(3, 1, 100, device="meta"))
    assert out.shape == (3, 4, 8) and out.device.type == "meta"


@pytest.mark.parametrize("training", [True, False])
def test_without_a_gradient_the_saved_data_is_left_out(cpu_backend, training):
    """keep_saved=False (what filterbank_step passes under no_grad, or when nothing requires a
    gradient) gives the same output and statistics, empty mask bits and bin statistics, passes
    opcheck, and a backward through it fails with a clear error instead of a wrong gradient."""
    backend = cpu_backend.name
    layer = randomise_bank(FusedSincFilterbank(6, 31, pool_bins=11, backend=backend))
    x = torch.randn(3, 1, 400)
    kept = torch.ops.sincfb.filterbank(*op_args(layer, x, training, backend))
    left_out = torch.ops.sincfb.filterbank(*op_args(layer, x, training, backend, keep_saved=False))
    for a, b in zip(kept[:3], left_out[:3]):
        assert torch.equal(a, b)
    assert left_out[3].shape == (3, 6, 0) and left_out[3].dtype == torch.uint8
    assert left_out[4].shape == (2, 3, 6, 0)
    no_grad_args = tuple(a.detach() if isinstance(a, torch.Tensor) else a
                         for a in op_args(layer, x, training, backend, keep_saved=False))
    torch.library.opcheck(torch.ops.sincfb.filterbank.default, no_grad_args)
    with torch.no_grad():   # the layer's own path: the same output as with a graph
        assert torch.equal(layer.train(training)(x), layer(x.clone().requires_grad_()).detach())
    out = torch.ops.sincfb.filterbank(*op_args(layer, x.requires_grad_(), training, backend,
                                               keep_saved=False))[0]
    with pytest.raises(RuntimeError, match="keep_saved=False"):
        out.sum().backward()
