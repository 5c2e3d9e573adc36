"""The conformance check every backend runs: fused layer vs the authors' composite in float64.

tests/sincfb/test_conformance.py runs :func:`check_against_composite` for every registered backend
(DESIGN.md §4): random inputs per call from a seed that the failure message prints, relative
errors in the 2-norm with a floor that scales with the terms (:mod:`tests.tolerance`), NaN never
passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from sincfb import FusedSincFilterbank
from tests.oracles import authors_bank, randomise_bank
from tests.seeds import derived_seed
from tests.tolerance import relative_error, tolerance


@dataclass(frozen=True)
class Shape:
    batch: int
    samples: int
    channels: int
    kernel_size: int
    pool_bins: int

    def __str__(self):
        return f"B{self.batch}-N{self.samples}-K{self.channels}-L{self.kernel_size}-P{self.pool_bins}"


# Small shapes that still cover the awkward cases: B=1, K not a multiple of 16, even L,
# P not dividing N_out, P == N_out, tiny filters.
SHAPES = [
    Shape(2, 400, 8, 31, 17),
    Shape(1, 300, 5, 10, 7),        # B=1, even L (-> 11), 290 outputs in 7 overlapping bins
    Shape(3, 257, 20, 3, 255),      # P == N_out
    Shape(2, 1200, 17, 251, 64),    # a paper filter length
    Shape(2, 1100, 3, 1001, 33),
    Shape(2, 300, 17, 31, 64),      # K = 17, many bins per tile
]


def poison_allocations(monkeypatch) -> None:
    """Make every tensor allocated with ``new_empty`` start as NaN (0xFF for bytes), so that an
    element a backend leaves unwritten cannot pass a comparison."""
    original = torch.Tensor.new_empty

    def poisoned_new_empty(self, *size, **kwargs):
        t = original(self, *size, **kwargs)
        return t.fill_(255) if t.dtype == torch.uint8 else t.fill_(float("nan"))

    monkeypatch.setattr(torch.Tensor, "new_empty", poisoned_new_empty)


def capture_activations(oracle) -> dict:
    """Keep the composite's filter output ``y`` and BatchNorm output ``z`` (with its gradient)."""
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            if name == "z" and output.requires_grad:
                output.retain_grad()
            seen[name] = output
        return hook

    oracle[0].register_forward_hook(keep("y"))
    oracle[1].register_forward_hook(keep("z"))
    return seen


def gradient_scales(oracle, seen: dict, x64: torch.Tensor, training: bool) -> dict:
    """The magnitudes that produce each gradient of the composite after its backward (the
    ``scale`` of :func:`tests.tolerance.relative_error`).

    BatchNorm's backward is ``dy = c dz - (its mean terms)``, ``c = gamma / sigma``; the mean
    terms cancel ``c dz`` entirely when the output cannot depend on ``y`` (one bin over the
    three samples of a batch of one: every output is ``beta``), and the gradients of ``x`` and
    the cut-offs are then rounding noise. Their scale is the same gradient from ``c dz`` alone;
    the scales of ``dgamma = sum dz zhat`` and ``dbeta = sum dz`` are the sums of absolute terms.
    """
    bn, y, dz = oracle[1], seen["y"], seen["z"].grad
    if training:
        mean, var = y.mean(dim=(0, 2)), y.var(dim=(0, 2), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    sigma = (var + bn.eps).sqrt().detach()
    zhat = ((y - mean[:, None]) / sigma[:, None]).detach()
    uncentred = (bn.weight / sigma).detach()[:, None] * dz
    sinc = oracle[0]
    dx, dlow, dband = torch.autograd.grad(y, [x64, sinc.low_hz_, sinc.band_hz_], uncentred,
                                          retain_graph=True)
    norm = torch.linalg.vector_norm
    return {"grad x": norm(dx).item(), "grad low_hz_": norm(dlow).item(),
            "grad band_hz_": norm(dband).item(),
            "grad bn weight": norm((dz * zhat).abs().sum(dim=(0, 2))).item(),
            "grad bn bias": norm(dz.abs().sum(dim=(0, 2))).item()}


def check_against_composite(backend: str, shape: Shape, training: bool, dtype=torch.float64,
                            tol: Optional[float] = None, precision=None, device="cpu", seed=None,
                            steps: int = 2):
    """Run ``steps`` forward/backward passes of the fused layer on ``device`` and of the authors'
    composite (float64 on the CPU, same parameters) and assert outputs, all five gradients and the
    running statistics agree within ``tol`` (relative; default: DESIGN.md §4's bound for ``dtype``
    and ``precision``, :func:`tests.tolerance.tolerance`). Returns the worst relative error seen."""
    tol = tolerance(dtype, precision) if tol is None else tol
    seed = derived_seed(f"{backend} {shape} {training} {dtype} {precision}") if seed is None else seed
    gen = torch.Generator().manual_seed(seed)
    oracle = authors_bank(shape.channels, shape.kernel_size, shape.pool_bins).double()
    randomise_bank(oracle, gen)
    seen = capture_activations(oracle)
    fused = FusedSincFilterbank(shape.channels, shape.kernel_size, pool_bins=shape.pool_bins,
                                backend=backend, precision=precision).to(device=device, dtype=dtype)
    fused.load_state_dict(oracle.state_dict())
    oracle.load_state_dict(fused.state_dict())  # the oracle sees exactly the rounded parameters
    fused.train(training), oracle.train(training)
    worst = 0.0

    def check(name, got, want, scale=None):
        nonlocal worst
        err = relative_error(got, want, scale)
        worst = max(worst, err)
        assert err <= tol, (f"{name}: relative error {err:.3e} > {tol:.1e} ({shape}, "
                            f"training={training}, seed={seed})")

    for _ in range(steps):
        x64 = torch.randn(shape.batch, 1, shape.samples, generator=gen, dtype=torch.float64)
        x = x64.to(device=device, dtype=dtype).requires_grad_()
        x64.requires_grad_()
        out, want = fused(x), oracle(x64)
        assert out.shape == want.shape and out.dtype == dtype
        check("output", out, want)
        grad = torch.randn(want.shape, generator=gen, dtype=torch.float64)
        out.backward(grad.to(device=device, dtype=dtype))
        want.backward(grad, retain_graph=True)
        scales = gradient_scales(oracle, seen, x64, training)
        pairs = [("grad x", x.grad, x64.grad),
                 ("grad low_hz_", fused.sinc.low_hz_.grad, oracle[0].low_hz_.grad),
                 ("grad band_hz_", fused.sinc.band_hz_.grad, oracle[0].band_hz_.grad),
                 ("grad bn weight", fused.batch_norm.weight.grad, oracle[1].weight.grad),
                 ("grad bn bias", fused.batch_norm.bias.grad, oracle[1].bias.grad)]
        for name, got_grad, want_grad in pairs:
            assert got_grad is not None, f"{name} missing"
            check(name, got_grad, want_grad, scales[name])
        check("running_mean", fused.batch_norm.running_mean, oracle[1].running_mean)
        check("running_var", fused.batch_norm.running_var, oracle[1].running_var)
        assert int(fused.batch_norm.num_batches_tracked) == int(oracle[1].num_batches_tracked)
        for module in (fused, oracle):
            module.zero_grad(set_to_none=True)
    return worst
