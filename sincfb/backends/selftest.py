"""Self-tests of compiled kernels: run once per process, before a backend is first used.

A library that builds and loads may still compute wrong numbers on a CPU its author never saw (a
BLAS path, an instruction set, a compiler). Before ``backend='auto'`` picks such a backend, its
forward and backward run on a tiny input and are compared with the 'reference' backend in
float64. A backend that raises or disagrees is marked unavailable with one warning that gives
the reason, and 'auto' moves on; a training run never dies because a fast path cannot run here.
"""
from __future__ import annotations

import threading
import warnings
from typing import Callable, Optional

import torch

from . import FilterbankConfig, get_backend

__all__ = ["SelfTest", "compare_with_reference"]

# Tiny but not trivial: two C++ tiles per clip (N_out > 1024), a pooling bin across the tile edge,
# bands well inside (0, fs/2) so no gradient is ill-conditioned in float32.
_BATCH, _FILTERS, _LENGTH, _SAMPLES, _BINS = 2, 5, 31, 1100, 7
_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach().double()
    if got.shape != want.shape:
        return float("inf")
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    scale = torch.linalg.vector_norm(want).clamp_min(1e-300)
    return float(torch.linalg.vector_norm(got - want) / scale)


def _agree(what: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    error = _relative_error(got, want)
    if not error <= tol:
        raise AssertionError(f"{what}: relative error {error:.2e} against the reference "
                             f"(tolerance {tol:.0e})")


def compare_with_reference(forward: Callable, backward: Callable,
                           dtypes=(torch.float64, torch.float32)) -> None:
    """Run ``forward`` and ``backward`` (the backend contract of ``sincfb.backends``) on a fixed
    tiny input in each dtype, training and eval mode, and raise ``AssertionError`` naming the
    first output or gradient that differs from the 'reference' backend's float64 result.

    The backward is compared given the backend's own saved mask and bin sums, so a ReLU decision
    that float32 rounds the other way cannot fail the test."""
    reference = get_backend("reference")
    gen = torch.Generator().manual_seed(20261201)
    K = _FILTERS
    low = torch.rand(K, 1, generator=gen, dtype=torch.float64) * 5000
    band = torch.rand(K, 1, generator=gen, dtype=torch.float64) * 2000 + 100
    state = (1 + 0.3 * torch.randn(K, generator=gen, dtype=torch.float64),      # gamma
             0.3 * torch.randn(K, generator=gen, dtype=torch.float64),          # beta
             0.1 * torch.randn(K, generator=gen, dtype=torch.float64),          # running mean
             torch.rand(K, generator=gen, dtype=torch.float64) + 0.5)           # running var
    x = torch.randn(_BATCH, 1, _SAMPLES, generator=gen, dtype=torch.float64)
    grad = torch.randn(_BATCH, K, _BINS, generator=gen, dtype=torch.float64)
    names = ("x", "low_hz_", "band_hz_", "weight", "bias")
    for dtype in dtypes:
        tol = _TOLERANCE[dtype]
        params = [t.to(dtype) for t in (low, band) + state]
        for training in (True, False):
            mode = f"{dtype}, {'training' if training else 'eval'}"
            cfg = FilterbankConfig(_LENGTH, 16000.0, 50.0, 50.0, _BINS, training, 1e-5, "ieee")
            got = forward(x.to(dtype), *params, cfg)
            want = reference.forward(x, low, band, *state, cfg)
            _agree(f"forward output ({mode})", got[0], want[0], tol)
            _agree(f"batch mean ({mode})", got[1], want[1], tol)
            _agree(f"batch variance ({mode})", got[2], want[2], tol)
            mean, var, mask_bits, bin_stats = got[1:]
            grads = backward(grad.to(dtype), x.to(dtype), *params[:4], mean, var, mask_bits,
                             bin_stats, cfg)
            wanted = reference.backward(grad, x, low, band, *state[:2], mean.double(),
                                        var.double(), mask_bits, bin_stats.double(), cfg)
            for name, g, w in zip(names, grads, wanted):
                _agree(f"gradient of {name} ({mode})", g, w, tol)


class SelfTest:
    """A check run once per process, the first time :meth:`passed` is asked; thread-safe.

    ``check`` raises to fail. While it runs, :meth:`passed` answers True on the checking thread
    (the check calls the very kernels it vets), and other threads wait for the verdict.
    A failure is warned about once, with ``consequence`` saying what happens instead.
    """

    def __init__(self, what: str, check: Callable[[], None], consequence: str):
        self.what, self.check, self.consequence = what, check, consequence
        self._lock = threading.RLock()
        self._verdict: Optional[bool] = None
        self._running = False
        self._reason: Optional[str] = None

    def passed(self) -> bool:
        """True when the check passed (it runs on the first call)."""
        with self._lock:
            if self._running:
                return True
            if self._verdict is None:
                self._running = True
                try:
                    with torch.no_grad(), torch.autocast("cpu", enabled=False):
                        self.check()
                    self._verdict = True
                except Exception as error:   # any failure of the kernels means: do not use them
                    self._verdict = False
                    self._reason = f"self-test failed: {type(error).__name__}: {error}"
                    warnings.warn(f"sincfb: {self.what} failed its self-test against the "
                                  f"reference backend ({type(error).__name__}: {error}); "
                                  f"{self.consequence}", RuntimeWarning, stacklevel=4)
                finally:
                    self._running = False
            return self._verdict

    def reason(self) -> Optional[str]:
        """Why the check failed, or None (passed, or not run yet)."""
        return self._reason

    def reset(self) -> None:
        """Forget the verdict, so the next :meth:`passed` runs the check again (tests)."""
        with self._lock:
            self._verdict, self._reason = None, None
