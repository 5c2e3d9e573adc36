"""The backward computes only the gradients autograd asks for (issue "Ahead of what a user would
write instead"): raw audio needs no input gradient (SincNet), frozen cut-offs no filter gradient,
a frozen BatchNorm no affine gradient. Skipped gradients are None; the others are unchanged."""
from __future__ import annotations

import pytest
import torch

from sincfb import FusedSincFilterbank
from tests.oracles import randomise_bank
from tests.tolerance import relative_error, tolerance

CASES = {   # what is frozen -> the parameters that keep requires_grad
    "audio": ("x",),
    "cutoffs": ("low_hz_", "band_hz_"),
    "batchnorm": ("weight", "bias"),
    "audio+cutoffs": ("x", "low_hz_", "band_hz_"),
}


def _run(layer, x, frozen, grad):
    params = {"low_hz_": layer.sinc.low_hz_, "band_hz_": layer.sinc.band_hz_,
              "weight": layer.batch_norm.weight, "bias": layer.batch_norm.bias}
    for name, p in params.items():
        p.grad = None
        p.requires_grad_(name not in frozen)
    x = x.clone().requires_grad_("x" not in frozen)
    layer(x).backward(grad)
    return {"x": x.grad, **{name: p.grad for name, p in params.items()}}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("frozen", sorted(CASES), ids=str)
def test_skipped_gradients_are_none_and_the_rest_unchanged(cpu_backend, frozen, training):
    """In the dtype the backend's kernels compute in; the same backend with every gradient is
    the reference, so the bound is that of the same terms."""
    gen = torch.Generator().manual_seed(7)
    dtype = cpu_backend.dtype
    layer = randomise_bank(FusedSincFilterbank(6, 31, pool_bins=9, backend=cpu_backend.name), gen)
    layer = layer.to(dtype).train(training)
    samples = 300 if cpu_backend.emulated else 1300     # emulated: keep it to seconds
    x = torch.randn(2, 1, samples, generator=gen, dtype=dtype)
    grad = torch.randn(2, 6, 9, generator=gen, dtype=dtype)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    everything = _run(layer, x, (), grad)
    layer.load_state_dict(state)                    # the same running statistics again
    partial = _run(layer, x, CASES[frozen], grad)
    for name, got in partial.items():
        if name in CASES[frozen]:
            assert got is None, name
        else:
            assert relative_error(got, everything[name]) <= tolerance(dtype, same_terms=True), name


def test_frozen_cutoffs_skip_the_filter_gradient_product():
    """Not only None at the end: the backend is told, and does not compute the product."""
    import dataclasses

    from sincfb.backends import get_backend, register_backend

    seen = []
    original = get_backend("reference")

    def spy(*args, **kwargs):
        seen.append((kwargs["need_input"], kwargs["need_filters"]))
        return original.backward(*args, **kwargs)

    register_backend(dataclasses.replace(original, backward=spy))
    try:
        layer = FusedSincFilterbank(4, 31, pool_bins=4, backend="reference")
        layer.sinc.low_hz_.requires_grad_(False)
        layer.sinc.band_hz_.requires_grad_(False)
        layer(torch.randn(2, 1, 300)).sum().backward()
    finally:
        register_backend(original)
    assert seen == [(False, False)]
