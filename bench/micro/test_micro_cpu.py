"""CPU micro-benchmarks (pytest-benchmark); not part of the test suite under tests/.

Run: ``.venv/bin/python -m pytest bench/micro --benchmark-only``.
"""
from __future__ import annotations

import pytest
import torch

import sincfb
from sincfb.backends import available_backends

FILTERS, LONGEST = 160, 1001                  # the paper's bank: K=160, longest L
SMALL = {"batch": 2, "samples": 16000, "filters": 40, "length": 251, "bins": 256}


@pytest.fixture
def sinc_layer():
    """The paper's longest bank's SincConv (K=160, L=1001)."""
    return sincfb.SincConv(FILTERS, LONGEST, 16000)


@pytest.fixture
def small_input():
    """A (B, 1, N) batch of random audio at the 'small' size."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(SMALL["batch"], 1, SMALL["samples"], generator=gen)


def test_filter_generation_L1001_K160(benchmark, sinc_layer):
    """Filter construction alone (float64 math, cast to float32), no autograd graph."""
    with torch.no_grad():
        filters = benchmark(sinc_layer.filters, torch.float32)
    assert filters.shape == (FILTERS, LONGEST)


def test_filter_generation_with_grad_L1001_K160(benchmark, sinc_layer):
    """Filter construction plus the autograd backward to the cut-offs (what the naive path pays)."""
    def build_and_backprop():
        sinc_layer.zero_grad(set_to_none=True)
        sinc_layer.filters(torch.float32).sum().backward()
    benchmark(build_and_backprop)
    assert sinc_layer.low_hz_.grad is not None


def _small_bank(backend: str) -> sincfb.FusedSincFilterbank:
    return sincfb.FusedSincFilterbank(SMALL["filters"], SMALL["length"], pool_bins=SMALL["bins"],
                                      backend=backend)


@pytest.mark.parametrize("backend", available_backends("cpu"))
def test_sincfb_training_forward_small(benchmark, small_input, backend):
    """Training-mode forward (batch statistics) of each available backend at the 'small' size."""
    bank = _small_bank(backend)
    with torch.no_grad():
        out = benchmark(bank, small_input)
    assert out.shape == (SMALL["batch"], SMALL["filters"], SMALL["bins"])


@pytest.mark.parametrize("backend", available_backends("cpu"))
def test_sincfb_eval_forward_small(benchmark, small_input, backend):
    """Eval-mode forward (running statistics) of each available backend at the 'small' size."""
    bank = _small_bank(backend).eval()
    with torch.no_grad():
        out = benchmark(bank, small_input)
    assert out.shape == (SMALL["batch"], SMALL["filters"], SMALL["bins"])


def test_naive_training_forward_small(benchmark, small_input):
    """The naive composite's training forward at the same size, for comparison."""
    bank = _small_bank("reference").to_sequential()
    with torch.no_grad():
        out = benchmark(bank, small_input)
    assert out.shape == (SMALL["batch"], SMALL["filters"], SMALL["bins"])
