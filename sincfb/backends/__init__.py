"""Registry of the fused filterbank's backends and the rule that picks one for ``backend='auto'``.

A backend is a pair of functions behind the one registered operation (``sincfb.ops``):

- ``forward(x, low_hz_, band_hz_, weight, bias, running_mean, running_var, cfg)`` returns
  ``(out, mean, var, mask_bits, bin_stats)`` with the shapes ``sincfb.ops`` documents;
- ``backward(grad_out, x, low_hz_, band_hz_, weight, bias, mean, var, mask_bits, bin_stats, cfg,
  need_input=True, need_filters=True)`` returns the gradients of ``x, low_hz_, band_hz_, weight,
  bias``; with ``need_input`` / ``need_filters`` False it skips that heavy product and returns
  None for x / for both cut-off parameters.

Each backend lives in its own module here (``reference``, ``cpu``, ``fft``, ``triton``) and registers
itself when imported; :func:`load_builtin_backends` imports whichever of them exist. ``available()``
and ``auto_priority()`` are evaluated lazily (never at import time), so importing sincfb queries no
GPU, builds no extension and imports neither triton nor ``torch._dynamo``
(``tests/sincfb/test_import.py``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..arguments import PRECISIONS, FilterbankConfig, default_precision

__all__ = ["FilterbankConfig", "Backend", "register_backend", "get_backend", "registered_backends",
           "available_backends", "unavailable_backends", "resolve_backend", "load_builtin_backends",
           "PRECISIONS", "assume_constant_result", "default_precision"]



@dataclass(frozen=True)
class Backend:
    """One implementation of the fused filterbank."""

    name: str
    forward: Callable
    backward: Callable
    devices: tuple[str, ...]            # device types it runs on, e.g. ("cpu", "cuda")
    available: Callable[[], bool] = lambda: True
    # Why ``available()`` is False (a build error, a failed self-test), or None.
    unavailable_reason: Callable[[], Optional[str]] = lambda: None
    # Device types on which 'auto' may time this backend against the others on a large problem
    # (sincfb.backends.calibration), whatever the static rule ranks first there.
    timed_on: tuple[str, ...] = ()
    # Rank for backend='auto' given (device_type, kernel_size): lower wins, None = never chosen.
    # Backends encode their measured crossovers here (e.g. FFT only above some filter length).
    auto_priority: Callable[[str, int], Optional[float]] = lambda device_type, kernel_size: None
    summary: str = ""
    # The input dtypes its own kernels compute in, most precise first; it hands other inputs to
    # another backend (Triton: float64 to the reference). Tests run it in the first.
    native_dtypes: tuple[str, ...] = ("float64", "float32")
    # Device types on which it runs emulated, orders of magnitude slower (Triton on the CPU, through
    # its interpreter): there tests keep to small shapes.
    emulated_on: tuple[str, ...] = ()


_REGISTRY: dict[str, Backend] = {}
_BUILTIN_MODULES = ("reference", "cpu", "fft", "triton")


def register_backend(backend: Backend) -> None:
    """Add (or replace) a backend under its name."""
    _REGISTRY[backend.name] = backend


def get_backend(name: str) -> Backend:
    """The backend called ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {sorted(_REGISTRY)} or 'auto'") from None


def registered_backends() -> list[str]:
    """Names of every registered backend, available here or not."""
    return list(_REGISTRY)


def available_backends(device_type: str | None = None) -> list[str]:
    """Names of the backends usable now (optionally: on this device type)."""
    return [name for name, b in _REGISTRY.items()
            if (device_type is None or device_type in b.devices) and b.available()]


def unavailable_backends(device_type: str | None = None,
                         kernel_size: int | None = None) -> dict[str, str]:
    """The registered backends that cannot run here, each with the reason (a failed build, a
    failed self-test, a missing library). Optionally only those for ``device_type``, and only
    those ``backend='auto'`` would consider for filters of ``kernel_size``."""
    def considered(b: Backend) -> bool:
        if device_type is None:
            return True
        return device_type in b.devices and (
            kernel_size is None or b.auto_priority(device_type, kernel_size) is not None)

    return {name: b.unavailable_reason() or "not available on this machine"
            for name, b in _REGISTRY.items() if considered(b) and not b.available()}


def assume_constant_result(fn: Callable) -> Callable:
    """``torch.compiler.assume_constant_result(fn)`` without its cost at import time: that
    decorator imports ``torch._dynamo`` (and with it inductor and triton, ~1 s) only to set this
    one attribute, which dynamo reads when it traces ``fn``. ``tests/sincfb/test_import.py``
    checks that the two still mark a function the same way."""
    fn._dynamo_marked_constant = True
    return fn


# Resolution may build an extension or probe a device: under torch.compile it runs once at trace
# time and its answer is baked into the graph as a constant.
@assume_constant_result
def resolve_backend(name: str, device_type: str, kernel_size: int, problem=None) -> str:
    """Turn ``'auto'`` into a concrete backend for this device and filter length; check others.

    With the call's shape (a :class:`sincfb.backends.calibration.Problem`), 'auto' may time the
    candidates on it once and use the fastest (:mod:`sincfb.backends.calibration`); without it,
    or for small problems, it follows the static rule of the backends' ``auto_priority``."""
    if device_type == "meta":          # shapes only: the op's fake implementation serves any backend
        return "reference" if name == "auto" else get_backend(name).name
    if name != "auto":
        backend = get_backend(name)
        if device_type not in backend.devices:
            raise ValueError(f"backend {name!r} does not run on {device_type!r} tensors "
                             f"(it supports {list(backend.devices)})")
        if not backend.available():
            reason = backend.unavailable_reason()
            raise RuntimeError(f"backend {name!r} is not available on this machine"
                               + (f": {reason}" if reason else "")
                               + "; use backend='auto' to fall back to one that is")
        return name
    ranked = []
    for backend in _REGISTRY.values():
        if device_type not in backend.devices:
            continue
        priority = backend.auto_priority(device_type, kernel_size)
        if priority is not None and backend.available():
            ranked.append((priority, backend.name))
    if not ranked:
        return "reference"
    from . import calibration

    static = min(ranked)[1]
    timed = [b.name for b in _REGISTRY.values()
             if device_type in b.timed_on and device_type in b.devices and b.available()]
    candidates = timed if static in timed else [static]
    return calibration.choose(candidates, static, device_type, kernel_size, problem).backend


def load_builtin_backends() -> None:
    """Import the backend modules that exist in this package (each registers itself)."""
    for name in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
