"""The ``backend`` fixture: every backend in sincfb's registry, on every device it runs on.

A test that takes ``backend`` runs once per (registered backend, device type); a pair that cannot
run here (no CUDA device, a C++ build that failed, no triton) is skipped with the registry's
reason. A new backend is tested by registering it: no list of names to edit.
"""
from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

import sincfb  # noqa: F401 -- importing sincfb registers the built-in backends
from sincfb.backends import available_backends, get_backend, registered_backends, \
    unavailable_backends


class BackendCase(NamedTuple):
    """One registered backend on one device type."""

    name: str
    device: str

    @property
    def dtype(self) -> torch.dtype:
        """The most precise input dtype the backend's own kernels compute in."""
        return getattr(torch, get_backend(self.name).native_dtypes[0])

    @property
    def emulated(self) -> bool:
        """Whether it runs emulated on this device (slow: tests keep to small shapes)."""
        return self.device in get_backend(self.name).emulated_on

    def __str__(self):
        return f"{self.name}-{self.device}"


def _cases(device: str | None = None) -> list:
    cases = [BackendCase(name, on) for name in registered_backends()
             for on in get_backend(name).devices if device in (None, on)]
    return [pytest.param(case, id=str(case),
                         marks=[pytest.mark.cuda] if case.device == "cuda" else [])
            for case in cases]


def _usable(case: BackendCase, monkeypatch) -> BackendCase:
    """``case``, or a skip with the registry's reason where it cannot run here. Kernels that can
    poison their outputs do (Triton fills every output and workspace with NaN before each
    launch, so an element left unwritten fails), and autotuning is off."""
    monkeypatch.setenv("SINCFB_TRITON_POISON", "1")
    monkeypatch.setenv("SINCFB_AUTOTUNE", "0")
    if case.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if case.name not in available_backends(case.device):
        reason = unavailable_backends(case.device).get(case.name, "not available")
        pytest.skip(f"backend {case.name!r} on {case.device}: {reason}")
    return case


@pytest.fixture(params=_cases())
def backend(request, monkeypatch) -> BackendCase:
    """A registered backend and a device type it runs on (skipped, with the reason, if not
    here)."""
    return _usable(request.param, monkeypatch)


@pytest.fixture(params=_cases("cpu"))
def cpu_backend(request, monkeypatch) -> BackendCase:
    """A registered backend that runs on the CPU, on the CPU (for tests whose oracle and buffers
    are CPU tensors)."""
    return _usable(request.param, monkeypatch)
