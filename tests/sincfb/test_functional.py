"""The functional form: BatchNorm without affine (weight/bias None) on every backend, and meta
tensors (shape propagation) through the functional form and the module."""
import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank, fused_sinc_filterbank
from tests.oracles import AuthorsSincConv
from tests.tolerance import relative_error, tolerance

B, N, K, L, P = 2, 300, 6, 31, 13


def _conv(gen, dtype):
    conv = AuthorsSincConv(K, L).to(dtype)
    with torch.no_grad():
        conv.low_hz_.copy_(torch.rand(K, 1, generator=gen) * 4000)
        conv.band_hz_.copy_(torch.rand(K, 1, generator=gen) * 1500 + 100)
    return conv


@pytest.mark.parametrize("affine", ["none", "weight only"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_missing_weight_and_bias_are_one_and_zero(cpu_backend, training, affine, torch_seed):
    """Against SincConv_fast -> F.batch_norm(weight=None or given, bias=None) -> relu -> pool, in
    the dtype the backend's kernels compute in."""
    backend, dtype = cpu_backend.name, cpu_backend.dtype
    tol = tolerance(dtype)
    gen = torch.Generator().manual_seed(torch_seed)
    conv = _conv(gen, torch.float64)
    weight = None if affine == "none" else (torch.rand(K, generator=gen, dtype=torch.float64)
                                            + 0.5).requires_grad_()
    running = [0.1 * torch.randn(K, generator=gen, dtype=torch.float64),
               torch.rand(K, generator=gen, dtype=torch.float64) + 0.5]
    theirs_running = [t.clone() for t in running]
    x64 = torch.randn(B, 1, N, generator=gen, dtype=torch.float64, requires_grad=True)
    x = x64.detach().to(dtype).requires_grad_()
    low, band = (p.detach().to(dtype).requires_grad_() for p in (conv.low_hz_, conv.band_hz_))
    ours_weight = None if weight is None else weight.detach().to(dtype).requires_grad_()
    out = fused_sinc_filterbank(x, low, band, ours_weight, None,
                                *[t.to(dtype) for t in running],   # float64: these very buffers
                                kernel_size=L, sample_rate=16000, pool_bins=P,
                                training=training, backend=backend)
    want = F.adaptive_avg_pool1d(F.relu(F.batch_norm(conv(x64), *theirs_running, weight, None,
                                                     training, 0.1, 1e-5)), P)
    assert relative_error(out, want) <= tol
    grad = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    out.backward(grad.to(dtype))
    want.backward(grad)
    pairs = [(x.grad, x64.grad), (low.grad, conv.low_hz_.grad), (band.grad, conv.band_hz_.grad)]
    if weight is not None:
        pairs.append((ours_weight.grad, weight.grad))
    for got, expected in pairs:   # no floor for cancelling terms here: a looser bound
        assert relative_error(got, expected) <= 100 * tol
    if training and dtype == torch.float64:
        for got, expected in zip(running, theirs_running):
            assert relative_error(got, expected) <= tolerance(dtype, same_terms=True)


@pytest.mark.parametrize("training", [True, False])
def test_opcheck_without_affine(cpu_backend, training):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 150, generator=gen, requires_grad=True)
    low = (torch.rand(4, 1, generator=gen) * 3000).requires_grad_()
    band = (torch.rand(4, 1, generator=gen) * 1000 + 100).requires_grad_()
    running = [torch.zeros(4), torch.ones(4)]
    torch.library.opcheck(torch.ops.sincfb.filterbank.default,
                          (x, low, band, None, None, *running, 21, 16000.0, 50.0, 50.0, 9,
                           training, 1e-5, cpu_backend.name, "ieee"))


def _meta(*shape):
    return torch.empty(*shape, device="meta")


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_meta_tensors_through_the_functional_form(training, affine):
    weight, bias = (_meta(K), _meta(K)) if affine else (None, None)
    running = [_meta(K), _meta(K)]
    out = fused_sinc_filterbank(_meta(3, 1, N), _meta(K, 1), _meta(K, 1), weight, bias,
                                *running, kernel_size=L, sample_rate=16000, pool_bins=P,
                                training=training, raise_on_nonfinite=True)
    assert out.shape == (3, K, P) and out.device.type == "meta"


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("training", [True, False])
def test_meta_tensors_through_the_module(training, momentum):
    layer = FusedSincFilterbank(K, L, pool_bins=P, momentum=momentum).to("meta").train(training)
    out = layer(_meta(3, 1, N))
    assert out.shape == (3, K, P) and out.device.type == "meta"
    out.sum().backward()
    assert layer.sinc.low_hz_.grad.shape == (K, 1) and layer.batch_norm.weight.grad.shape == (K,)
