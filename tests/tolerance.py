"""How the tests compare a computed tensor with its reference, and how close it must be: one rule
and one table, documented here once (DESIGN.md §4).

    relative_error(got, want, scale) = ||got - want||_2 / max(||want||_2, scale)     (float64)

and a test asserts ``relative_error(...) <= tol``. That is ``torch.testing.assert_close``'s rule in
the 2-norm with ``rtol = atol / scale = tol``: relative to the value, but never relative to less
than ``scale``, the magnitude of the quantities that produce the value. It matters where a value
is a difference of large terms that cancel: a gradient that is exactly zero in theory (BatchNorm
over three samples pooled into one bin makes the output independent of the cut-offs) comes out as
rounding noise near 1e-21 in both implementations, and the plain relative error of two such
noises is O(1) by chance. The noise is a rounding of the terms, so it is small next to their
size, which is what ``scale`` measures (for a sum, the norm of the sum of absolute terms, or of
the value with the cancelling terms left out). ``scale=None`` is the plain relative error. A NaN
or Inf in ``got`` is an infinite error, so it never passes.

:data:`TOLERANCE` is DESIGN.md §4's precision table, by arithmetic path, against the float64
oracle; :func:`tolerance` picks the row for a dtype and precision.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["relative_error", "TOLERANCE", "tolerance", "END_TO_END_GRADIENT"]

TOLERANCE = {
    # float64 throughout: the fast backends sum in other orders (folded taps, FFTs, tiles) than
    # the composite; rounding stays orders of magnitude below this
    "float64": 1e-9,
    # two float64 computations of the same terms in another order (a kernel stage against its
    # formula in sincfb.algebra, the reference backend against the composite's functional form)
    "float64 same terms": 1e-12,
    "ieee": 1e-5,       # float32 throughout (the CPU backends in float32, Triton 'ieee')
    "tf32": 1e-3,       # tf32 operands, fp32 accumulation
    "bf16": 1e-2,       # bf16 operands (or bfloat16 input), fp32 accumulation
}

#: DESIGN.md §4: end to end, a reduced-precision forward flips ReLU decisions near zero and each
#: flip moves a gradient by a whole bin weight, so gradients compared end to end (not at the
#: forward's own saved data) get these looser bounds (measured: up to 6e-2 with bf16). A single
#: flip among B N_out = 95,500 positions moves a gradient by ~3e-3 of its norm, so even 'ieee'
#: gets one.
END_TO_END_GRADIENT = {"ieee": 1e-2, "tf32": 3e-2, "bf16": 1e-1}


def tolerance(dtype: torch.dtype = torch.float64, precision: Optional[str] = None, *,
              same_terms: bool = False) -> float:
    """The bound for results computed in ``dtype`` with operand ``precision`` ('ieee', 'tf32',
    'bf16'; None: 'ieee'): float64 input is computed in float64 whatever the precision.
    ``same_terms``: the reference computes the same terms in another order (a kernel stage
    against its formula), which float64 must then match to 1e-12."""
    if dtype == torch.float64:
        return TOLERANCE["float64 same terms" if same_terms else "float64"]
    if dtype == torch.bfloat16:
        return TOLERANCE["bf16"]
    return TOLERANCE[precision or "ieee"]


def relative_error(got: torch.Tensor, want: torch.Tensor, scale: Optional[float] = None) -> float:
    """||got - want|| / max(||want||, scale) in float64 on the CPU; inf when ``got`` is not finite
    (see the module's docstring for what ``scale`` is)."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not torch.isfinite(got).all():
        return float("inf")
    floor = max(torch.linalg.vector_norm(want).item(), scale or 0.0, 1e-300)
    return torch.linalg.vector_norm(got - want).item() / floor
