"""How the tests compare a computed tensor with its reference: one rule, documented here once.

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
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["relative_error"]


def relative_error(got: torch.Tensor, want: torch.Tensor, scale: Optional[float] = None) -> float:
    """||got - want|| / max(||want||, scale) in float64; inf when ``got`` is not finite (see the
    module's docstring for what ``scale`` is)."""
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    floor = max(torch.linalg.vector_norm(want).item(), scale or 0.0, 1e-300)
    return torch.linalg.vector_norm(got - want).item() / floor
