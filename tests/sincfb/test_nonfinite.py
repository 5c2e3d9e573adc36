"""NaN stays NaN (DESIGN.md §4): non-finite input or BatchNorm tensors make exactly the outputs and
gradients non-finite that the composite ``to_sequential()`` makes non-finite, on every backend, and
a batch with non-finite statistics never enters the running statistics."""
import pytest
import torch

import sincfb.backends.fft as fft_backend
from sincfb import FusedSincFilterbank, fused_sinc_filterbank
from sincfb.backends import PRECISIONS, get_backend
from tests.oracles import randomise_bank
from tests.tolerance import relative_error, tolerance

# Triton's interpreter (numpy) warns about the NaN arithmetic these tests are made of
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

B, N, K, L, P = 3, 160, 5, 21, 9

# (dtype, precision): float64 computes in float64 whatever the precision; float32 in each operand
# precision (Triton emulates tf32 and bf16 rounding; the other backends compute in ieee)
PATHS = [(torch.float64, None)] + [(torch.float32, p) for p in PRECISIONS]


def _output_tol(dtype, precision) -> float:
    """Finite entries of the output agree with the float64 composite within this: DESIGN.md §4's
    bound, doubled for the reduced precisions (fewer finite entries to average)."""
    return tolerance(dtype, precision) * (2 if precision in ("tf32", "bf16") else 1)

def _nan_sample(x, layer):
    x[1, 0, 60] = float("nan")


def _inf_samples(x, layer):
    x[1, 0, 60] = float("inf")
    x[2, 0, 150] = -float("inf")      # near the end: only the last bins reach it


def _nan_weight(x, layer):
    with torch.no_grad():
        layer.batch_norm.weight[2] = float("nan")


def _inf_weight(x, layer):
    with torch.no_grad():
        layer.batch_norm.weight[INF_CHANNEL] = float("inf")


INF_CHANNEL = 1
CASES = {"nan sample": _nan_sample, "inf samples": _inf_samples, "nan bn weight": _nan_weight,
         "inf bn weight": _inf_weight}
# An Inf gamma: torch's BatchNorm computes y * (gamma / sigma) + (beta - mean gamma / sigma), whose
# Inf - Inf makes z NaN where our (y - mean) / sigma * gamma + beta is -Inf (ReLU: 0) and vice
# versa, so that channel's output and the value of its dgamma follow the formula. The other
# channels and the non-finite pattern of every gradient must still agree.
FORMULA_DEPENDENT = {"inf bn weight"}


def _pair(backend, dtype, precision, case, training, seed):
    """The fused layer and its float64 composite with the same parameters, and an input, both
    with the case's non-finite value."""
    gen = torch.Generator().manual_seed(seed)
    layer = randomise_bank(FusedSincFilterbank(K, L, pool_bins=P, backend=backend,
                                               precision=precision), gen)
    x = torch.randn(B, 1, N, generator=gen, dtype=torch.float64)
    CASES[case](x, layer)
    composite = layer.to_sequential().double()
    layer.to(dtype).train(training), composite.train(training)
    return layer, composite, x


def _assert_same_nonfinite(name, got, want, tol=None):
    """Same NaN/Inf positions; the finite entries agree within ``tol`` when given."""
    assert got is not None and want is not None, name
    finite = torch.isfinite(want)
    assert torch.equal(torch.isfinite(got), finite), (
        f"{name}: non-finite at {(~torch.isfinite(got)).nonzero().tolist()[:6]}..., "
        f"composite at {(~finite).nonzero().tolist()[:6]}...")
    if tol is not None and bool(finite.any()):
        assert relative_error(got[finite], want[finite]) <= tol, name


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype, precision", PATHS, ids=str)
def test_non_finite_pattern_equals_the_composite(cpu_backend, dtype, precision, case, training,
                                                torch_seed):
    if str(dtype).removeprefix("torch.") not in get_backend(cpu_backend.name).native_dtypes:
        pytest.skip(f"{cpu_backend.name} hands {dtype} to another backend")
    _check_pattern(cpu_backend.name, dtype, precision, case, training, torch_seed)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fft_tensor_op_path_too(monkeypatch, dtype, case, training, torch_seed):
    """The FFT backend's plain tensor-op path (what CUDA runs), not its C++ kernels."""
    monkeypatch.setattr(fft_backend, "USE_CPP_KERNELS", False)
    _check_pattern("fft", dtype, None, case, training, torch_seed)


def _check_pattern(backend, dtype, precision, case, training, seed):
    """Output, gradients and running statistics of ``backend`` against the composite's."""
    layer, composite, x64 = _pair(backend, dtype, precision, case, training, seed=seed)
    before = [t.clone() for t in (layer.batch_norm.running_mean, layer.batch_norm.running_var)]
    x, x64 = x64.to(dtype).clone().requires_grad_(), x64.clone().requires_grad_()
    out, want = layer(x), composite(x64)
    assert not bool(torch.isfinite(want).all())         # the case is not vacuous
    channels = [k for k in range(K) if case not in FORMULA_DEPENDENT or k != INF_CHANNEL]
    _assert_same_nonfinite("output", out[:, channels], want[:, channels],
                           _output_tol(dtype, precision))
    grad = torch.randn(want.shape, dtype=torch.float64)
    out.backward(grad.to(dtype))
    want.backward(grad)
    # Gradients: the same non-finite entries as the composite's (decided: follow the composite;
    # its ReLU passes the gradient at a NaN, so eval-mode dx stays finite); values are compared
    # where float64 makes them exact.
    tol = 1e-8 if dtype == torch.float64 and case not in FORMULA_DEPENDENT else None
    params = [("low_hz_", layer.sinc.low_hz_, composite[0].low_hz_),
              ("band_hz_", layer.sinc.band_hz_, composite[0].band_hz_),
              ("bn weight", layer.batch_norm.weight, composite[1].weight),
              ("bn bias", layer.batch_norm.bias, composite[1].bias)]
    _assert_same_nonfinite("grad x", x.grad, x64.grad, tol)
    for name, ours, theirs in params:
        _assert_same_nonfinite(f"grad {name}", ours.grad, theirs.grad, tol)
    _check_running_statistics(layer, composite, before, training)


def _check_running_statistics(layer, composite, before, training):
    bn, theirs = layer.batch_norm, composite[1]
    if not training:
        return
    if bool(torch.isfinite(theirs.running_mean).all()):      # e.g. a NaN weight: a finite batch
        tol = 1e-6 if bn.running_mean.dtype == torch.float32 else tolerance(same_terms=True)
        assert relative_error(bn.running_mean, theirs.running_mean) <= tol
        assert relative_error(bn.running_var, theirs.running_var) <= tol
        assert int(bn.num_batches_tracked) == 1
    else:                                     # the composite folded NaN in; we left them alone
        assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
        assert int(bn.num_batches_tracked) == 0


def test_rejected_batch_is_not_counted_in_the_cumulative_average():
    """momentum=None averages over the batches taken: a skipped one changes neither the buffers
    nor the count, so the result equals a composite that never saw it."""
    torch.manual_seed(0)
    layer = randomise_bank(FusedSincFilterbank(K, L, pool_bins=P, momentum=None,
                                               backend="reference")).double()
    composite = layer.to_sequential()
    good = [torch.randn(B, 1, N, dtype=torch.float64) for _ in range(2)]
    bad = torch.randn(B, 1, N, dtype=torch.float64)
    bad[0, 0, 5] = float("nan")
    for x in (good[0], bad, good[1]):
        layer(x)
    for x in good:
        composite(x)
    assert int(layer.batch_norm.num_batches_tracked) == int(composite[1].num_batches_tracked) == 2
    tol = tolerance(same_terms=True)
    assert relative_error(layer.batch_norm.running_mean, composite[1].running_mean) <= tol
    assert relative_error(layer.batch_norm.running_var, composite[1].running_var) <= tol


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_raise_on_nonfinite_raises_before_touching_the_buffers(training):
    layer = randomise_bank(FusedSincFilterbank(K, L, pool_bins=P, backend="reference",
                                               raise_on_nonfinite=True)).train(training)
    bn = layer.batch_norm
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(B, 1, N)
    torch.testing.assert_close(layer(x), layer.to_sequential().train(training)(x))  # finite: fine
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    x[2, 0, 7] = float("nan")
    with pytest.raises(FloatingPointError, match=r"x: 1 non-finite \(clips 2\)") as error:
        layer(x)
    if training:
        assert "running statistics left unchanged" in str(error.value)
        assert "batch statistics" in str(error.value)
    for key, value in layer.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        bn.weight[3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"weight: 1 non-finite \(channels 3\)"):
        layer(torch.randn(B, 1, N))


def test_functional_form_propagates_or_raises():
    gen = torch.Generator().manual_seed(3)
    low, band = torch.rand(K, 1, generator=gen) * 3000, torch.rand(K, 1, generator=gen) * 1000
    running = [torch.zeros(K), torch.ones(K)]
    x = torch.randn(B, 1, N, generator=gen)
    x[0, 0, 40] = float("nan")
    kwargs = dict(kernel_size=L, sample_rate=16000, pool_bins=P, backend="reference")
    out = fused_sinc_filterbank(x, low, band, None, None, *running, **kwargs)
    assert bool(torch.isnan(out).all())                 # training: every statistic is NaN
    assert torch.equal(running[0], torch.zeros(K)) and torch.equal(running[1], torch.ones(K))
    with pytest.raises(FloatingPointError, match="non-finite"):
        fused_sinc_filterbank(x, low, band, None, None, *running, raise_on_nonfinite=True,
                              **kwargs)
