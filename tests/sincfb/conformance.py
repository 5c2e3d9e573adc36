"""The conformance check every backend runs: fused layer vs the authors' composite in float64.

Later backends reuse :func:`check_against_composite` with their own shape table and tolerance
(DESIGN.md §4): fresh random inputs per call, relative errors in the 2-norm, NaN never passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sincfb import FusedSincFilterbank
from tests.oracles import authors_bank, randomise_bank


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
]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| in float64; inf when got has a NaN or Inf."""
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    return (torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want).clamp_min(1e-300)).item()


def check_against_composite(backend: str, shape: Shape, training: bool, dtype=torch.float64,
                            tol: float = 1e-10, precision=None, device="cpu", seed=None,
                            steps: int = 2):
    """Run ``steps`` forward/backward passes of the fused layer and of the authors' composite
    (float64, same parameters) and assert outputs, all five gradients and the running statistics
    agree within ``tol`` (relative). Returns the worst relative error seen."""
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    oracle = authors_bank(shape.channels, shape.kernel_size, shape.pool_bins).double()
    randomise_bank(oracle, gen)
    fused = FusedSincFilterbank(shape.channels, shape.kernel_size, pool_bins=shape.pool_bins,
                                backend=backend, precision=precision).to(device=device, dtype=dtype)
    fused.load_state_dict(oracle.state_dict())
    oracle.load_state_dict(fused.state_dict())  # the oracle sees exactly the rounded parameters
    fused.train(training), oracle.train(training)
    worst = 0.0

    def check(name, got, want):
        nonlocal worst
        err = relative_error(got, want)
        worst = max(worst, err)
        assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.1e} ({shape}, training={training})"

    for _ in range(steps):
        x64 = torch.randn(shape.batch, 1, shape.samples, generator=gen, dtype=torch.float64)
        x = x64.to(device=device, dtype=dtype).requires_grad_()
        x64.requires_grad_()
        out, want = fused(x), oracle(x64)
        assert out.shape == want.shape and out.dtype == dtype
        check("output", out, want)
        grad = torch.randn(want.shape, generator=gen, dtype=torch.float64)
        out.backward(grad.to(device=device, dtype=dtype))
        want.backward(grad)
        pairs = [("grad x", x.grad, x64.grad),
                 ("grad low_hz_", fused.sinc.low_hz_.grad, oracle[0].low_hz_.grad),
                 ("grad band_hz_", fused.sinc.band_hz_.grad, oracle[0].band_hz_.grad),
                 ("grad bn weight", fused.batch_norm.weight.grad, oracle[1].weight.grad),
                 ("grad bn bias", fused.batch_norm.bias.grad, oracle[1].bias.grad)]
        for name, got_grad, want_grad in pairs:
            assert got_grad is not None, f"{name} missing"
            check(name, got_grad, want_grad)
        check("running_mean", fused.batch_norm.running_mean, oracle[1].running_mean)
        check("running_var", fused.batch_norm.running_var, oracle[1].running_var)
        assert int(fused.batch_norm.num_batches_tracked) == int(oracle[1].num_batches_tracked)
        for module in (fused, oracle):
            module.zero_grad(set_to_none=True)
    return worst
