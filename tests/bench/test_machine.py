"""bench.machine.measured_rates: the SGEMM and FFT rates the benchmarks print beside their own
GFLOP/s are real timings at the current thread count."""
import math

import torch

from bench.machine import measured_rates


def test_measured_rates_are_positive_rates_at_the_current_thread_count():
    rates = measured_rates()
    assert rates["threads"] == torch.get_num_threads()
    for key in ("sgemm_tile_gflops", "sgemm_1024_gflops", "rfft_48000_gflops"):
        # between a slow emulator (0.1 GFLOP/s) and anything a CPU can do (1e5 GFLOP/s)
        assert 0.1 < rates[key] < 1e5 and math.isfinite(rates[key]), (key, rates)
