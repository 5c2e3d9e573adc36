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


# The per-call cost of the op's Python plumbing (argument declaration, fake, autograd context):
# a bank so small (4 filters, 31 taps, 256 samples) that the kernels take almost nothing. The
# before/after comparison of the floors refactor in BENCHMARKS.md timed these two calls.
TINY = {"filters": 4, "length": 31, "samples": 256, "bins": 8}


@pytest.fixture
def tiny_bank_and_input():
    """A 4-filter, 31-tap bank (cpu backend) and one 256-sample clip."""
    torch.manual_seed(0)
    bank = sincfb.FusedSincFilterbank(TINY["filters"], TINY["length"], 16000, TINY["bins"],
                                      backend="cpu")
    return bank, torch.randn(1, 1, TINY["samples"])


def test_call_overhead_forward_backward_tiny(benchmark, tiny_bank_and_input):
    """One training forward and backward of the tiny bank: mostly per-call Python work."""
    bank, clip = tiny_bank_and_input

    def forward_backward():
        bank.zero_grad(set_to_none=True)
        bank(clip).sum().backward()
    benchmark(forward_backward)
    assert all(p.grad is not None for p in bank.parameters())


def test_call_overhead_eval_forward_tiny(benchmark, tiny_bank_and_input):
    """One eval-mode forward of the tiny bank without autograd."""
    bank, clip = tiny_bank_and_input
    bank.eval()
    with torch.no_grad():
        out = benchmark(bank, clip)
    assert out.shape == (1, TINY["filters"], TINY["bins"])
