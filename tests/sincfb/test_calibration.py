"""'auto' that knows the machine: the candidates are timed once per shape (a fake timer here),
the choice is cached on disk by machine and shape, and SINCFB_AUTO fixes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sincfb import FusedSincFilterbank
from sincfb.backends import calibration, resolve_backend
from sincfb.backends.calibration import Problem

BIG = Problem(4, 48000, 160, 251, 1024, "float32", True)      # the paper's bank at B = 4
SMALL = Problem(2, 4000, 16, 31, 64, "float32", True)


class FakeTimer:
    """Seconds per backend, and a log of what was timed."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self, backend, problem, device_type):
        self.calls.append((backend, problem.key()))
        return self.seconds[backend]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SINCFB_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SINCFB_AUTO", "calibrate")
    calibration.forget()
    yield tmp_path
    calibration.forget()


def test_the_fastest_candidate_is_chosen_and_cached(cache):
    timer = FakeTimer({"cpu": 1.0, "fft": 0.5})
    decision = calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG, timer)
    assert decision.backend == "fft" and decision.how.startswith("measured now")
    assert sorted(b for b, _ in timer.calls) == ["cpu", "fft"]
    stored = json.loads(calibration.cache_path().read_text())
    (machine, choices), = stored.items()
    assert "threads=" in machine and choices[BIG.key()]["backend"] == "fft"
    again = FakeTimer({"cpu": 0.1, "fft": 9.0})       # a second process: reads, does not time
    decision = calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG, again)
    assert decision.backend == "fft" and again.calls == []
    assert "measured before" in decision.describe() and "fft 500 ms" in decision.describe()


def test_benchmarks_can_read_back_what_was_measured_on_this_machine(cache):
    assert calibration.cached_choices("cpu") == {}
    timer = FakeTimer({"cpu": 0.2, "fft": 0.5})
    calibration.choose(["cpu", "fft"], "fft", "cpu", 251, BIG, timer)
    eval_problem = BIG._replace(training=False, kernel_size=1001)
    calibration.choose(["cpu", "fft"], "cpu", "cpu", 1001, eval_problem,
                       FakeTimer({"cpu": 0.9, "fft": 0.1}))
    assert calibration.cached_choices("cpu") == {BIG.key(): "cpu", eval_problem.key(): "fft"}


def test_batch_sizes_share_a_bucket_and_other_shapes_are_timed_again(cache):
    timer = FakeTimer({"cpu": 1.0, "fft": 0.5})
    calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG, timer)
    calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG._replace(batch=3), timer)
    assert len(timer.calls) == 2                       # batch 3 and 4 share the bucket of 4
    calibration.choose(["cpu", "fft"], "cpu", "cpu", 501, BIG._replace(kernel_size=501), timer)
    assert len(timer.calls) == 4


def test_small_problems_and_static_mode_never_time(cache, monkeypatch):
    timer = FakeTimer({"cpu": 1.0, "fft": 0.5})
    assert calibration.choose(["cpu", "fft"], "cpu", "cpu", 31, SMALL, timer).backend == "cpu"
    monkeypatch.setenv("SINCFB_AUTO", "static")
    decision = calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG, timer)
    assert decision == calibration.Decision("cpu", "static rule") and timer.calls == []


def test_a_forced_choice_is_used_when_it_can_run(cache, monkeypatch):
    timer = FakeTimer({"cpu": 1.0, "fft": 0.5})
    monkeypatch.setenv("SINCFB_AUTO", "cpu")
    assert calibration.choose(["cpu", "fft"], "fft", "cpu", 251, BIG, timer).backend == "cpu"
    monkeypatch.setenv("SINCFB_AUTO", "triton")
    decision = calibration.choose(["cpu", "fft"], "fft", "cpu", 251, BIG, timer)
    assert decision.backend == "fft" and "cannot run here" in decision.how and not timer.calls


def test_an_unwritable_cache_costs_a_measurement_not_an_error(cache, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SINCFB_CACHE_DIR", str(blocker / "cache"))
    timer = FakeTimer({"cpu": 1.0, "fft": 0.5})
    assert calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG, timer).backend == "fft"


def test_the_real_timer_runs_the_candidates(cache, monkeypatch):
    """The default timer times the operation itself (a small problem, forced past the
    threshold), and the layer's repr says how the choice was made."""
    monkeypatch.setattr(calibration, "MIN_WORK", 0.0)
    layer = FusedSincFilterbank(8, 701, pool_bins=16)
    layer(torch.randn(2, 1, 3000)).sum().backward()
    shown = repr(layer)
    assert "measured now on this machine" in shown and "ms" in shown
    assert resolve_backend("auto", "cpu", 701) in ("cpu", "fft", "reference")


def test_a_candidate_that_fails_is_not_chosen(cache):
    def timer(backend, problem, device_type):
        if backend == "fft":
            raise RuntimeError("out of memory")
        return 1.0

    assert calibration.choose(["cpu", "fft"], "fft", "cpu", 251, BIG, timer).backend == "cpu"


def test_below_the_static_crossover_both_cpu_backends_are_candidates(cache, monkeypatch):
    """The static rule never picks 'fft' at L = 251, but the timing may."""
    from sincfb import _build

    if not _build.load_cpu_extension():
        pytest.skip("the C++ backend is not available")
    seen = []

    def choose(candidates, static, device_type, kernel_size, problem, timer=None):
        seen.append((sorted(candidates), static))
        return calibration.Decision(static, "static rule")

    monkeypatch.setattr(calibration, "choose", choose)
    resolve_backend("auto", "cpu", 251, BIG)
    assert seen == [(["cpu", "fft"], "cpu")]


def test_a_cache_shared_between_cpu_kinds_keeps_their_choices_apart():
    """ATen forced onto AVX2 (as on an AVX2-only CPU) is another machine to the cache, so its
    timings never decide for the AVX-512 path, nor the other way round."""
    script = "from sincfb.backends import calibration; print(calibration._machine_key('cpu'))"
    keys = {subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                           text=True, env={**os.environ,
                                           "ATEN_CPU_CAPABILITY": capability}).stdout.strip()
            for capability in ("avx2", "default")}
    assert len(keys) == 2 and any("aten=AVX2" in key for key in keys)


def test_a_change_of_the_kernels_retimes_the_choices(monkeypatch, tmp_path):
    """Choices timed with one version of the C++ kernels do not decide for another: the cache key
    carries the digest of their sources and flags, which changes with any source byte."""
    from sincfb import _build

    before = calibration._machine_key("cpu")
    assert f"kernels={_build.kernel_digest()}" in before
    for name in _build.SOURCES + _build._HEADERS:
        (tmp_path / name).write_bytes((_build.SOURCE_DIR / name).read_bytes())
    monkeypatch.setattr(_build, "SOURCE_DIR", tmp_path)
    assert calibration._machine_key("cpu") == before      # the folder is not part of it
    edited = tmp_path / _build.SOURCES[0]
    edited.write_bytes(edited.read_bytes() + b"\n// edited\n")
    assert calibration._machine_key("cpu") != before


@pytest.mark.parametrize("contents", [
    b"\xff\xfe\x00 not text", b"not json", b"[1, 2, 3]", b'{"machine": 3}',
    b'{"machine": {"key": {"backend": ["cpu"]}}}',
    b'{"machine": {"key": {"backend": "cpu", "seconds": "fast"}}}',
    b'{"machine": {"key": {"backend": "cpu", "seconds": {"cpu": true}}}}',
    b"[" * 200000,                                            # nested past the parser's stack
    b'{"pad": "' + b"x" * (calibration.MAX_CACHE_BYTES + 10) + b'"}',   # too large to read
], ids=["binary", "text", "list", "number", "list-backend", "text-seconds", "bool-seconds",
        "deep", "huge"])
def test_a_choices_file_of_any_content_is_ignored_with_one_warning(cache, contents):
    """The file is shared by every process of the user and may be damaged or planted: whatever
    it holds, 'auto' measures again (one warning) and writes a valid file back."""
    calibration.cache_path().write_bytes(contents)
    timer = FakeTimer({"cpu": 1.0, "fft": 0.5})
    with pytest.warns(RuntimeWarning, match="ignoring .*auto-choices.json") as caught:
        assert calibration.choose(["cpu", "fft"], "cpu", "cpu", 251, BIG, timer).backend == "fft"
        assert calibration.cached_choices("cpu") == {BIG.key(): "fft"}   # the rewritten file
    assert sum("ignoring" in str(w.message) for w in caught) == 1
    assert len(timer.calls) == 2
    assert calibration.cache_path().stat().st_size < 1000
