"""The C++ backend on every CPU kind (issue "Runs on every CPU").

Development and CI machines change CPU kind from day to day (AMD Zen 4 with AVX-512, Zen 3 with
AVX2 only, Intel with AVX-512 and AMX), so the paths another kind would take are forced here, on
whatever CPU runs the suite:

- our own loops at the ``baseline`` instruction set (what a CPU without AVX2, or aarch64, builds)
  with ``SINCFB_ISA=baseline``;
- torch's libraries on their AVX2 paths (ATen's vectorised kernels, MKL's GEMM and FFT, oneDNN),
  as on an AVX2-only CPU, with their own documented switches;
- one thread instead of all cores.

Each forced setting reruns the parity tests of the 'cpu' and 'fft' backends in a child process
(the switches act at library load). The GEMMs of the kernels have one route, ATen's public
``at::mm_out``; the BLAS behind it picks its instruction set at run time, which is what
``MKL_ENABLE_INSTRUCTIONS`` forces. Also here: the self-test that keeps a library computing wrong
numbers out of use, the flag choice per CPU, and the build's failure modes.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from sincfb import FusedSincFilterbank, _build
from sincfb.backends import cpu as cpu_backend
from sincfb.backends import fft as fft_backend
from sincfb.backends import resolve_backend, unavailable_backends
from tests.sincfb.conformance import SHAPES, Shape, check_against_composite

REPO = Path(__file__).resolve().parents[2]
CHILD = "SINCFB_TEST_FORCED_ROUTE"

# name -> environment of the child process that reruns the parity tests
FORCED_ROUTES = {
    "baseline-isa": {"SINCFB_ISA": "baseline"},
    "avx2-libraries": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                       "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
}
PARITY_TESTS = ["tests/sincfb/test_cpu_backend.py", "tests/sincfb/test_fft_backend.py",
                "tests/sincfb/test_portability.py::test_forced_route_is_in_effect"]

cpp = pytest.mark.skipif(not _build.load_cpu_extension(),
                         reason=f"C++ CPU backend unavailable: {_build.build_error()}")


def _library(isa=None) -> Path:
    name = _build.extension_name(isa)
    return _build.build_directory(name) / f"{name}.so"


def _registers(library: Path) -> set[str]:
    """The vector register classes (xmm, ymm, zmm) the library's code uses, by objdump."""
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)],
                             capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"%([xyz]mm)\d", listing))


needs_x86_objdump = pytest.mark.skipif(
    shutil.which("objdump") is None or _build._machine() not in ("x86_64", "amd64"),
    reason="needs objdump on x86-64")


# --- forced routes: the parity tests under each ---------------------------------------------

@cpp
@pytest.mark.parametrize("route", sorted(FORCED_ROUTES))
def test_parity_tests_pass_under_forced_route(route, tmp_path):
    proof = tmp_path / "route-in-effect"
    env = {**os.environ, **FORCED_ROUTES[route], CHILD: route, f"{CHILD}_PROOF": str(proof)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                             *PARITY_TESTS], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert proof.read_text() == route       # the child checked that its setting took effect


@pytest.mark.skipif(CHILD not in os.environ, reason="runs inside the forced-route child only")
def test_forced_route_is_in_effect():
    """Inside a child: the forced setting took effect (else the parity run proves nothing)."""
    route = os.environ[CHILD]
    assert cpu_backend.cpu_backend_ready(), cpu_backend.cpu_unavailable_reason()
    if route == "baseline-isa":
        assert _build.instruction_set() == "baseline"
        assert not any(f.startswith("-m") for f in _build.compiler_flags())
        if shutil.which("objdump") and _build._machine() in ("x86_64", "amd64"):
            assert _registers(_library()) <= {"xmm"}        # SSE2 only: no AVX, no AVX-512
    elif route == "avx2-libraries":
        assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT")
    elif route == "one-thread":
        assert torch.get_num_threads() == 1
    Path(os.environ[f"{CHILD}_PROOF"]).write_text(route)


@cpp
@pytest.mark.parametrize("threads", [1, 2])
def test_parity_at_each_thread_count(threads):
    """The kernels hand tiles out dynamically; the sums must not depend on who computed what."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for shape in (SHAPES[3], Shape(3, 5000, 7, 101, 3)):
            for backend in ("cpu", "fft"):
                check_against_composite(backend, shape, True, torch.float64, steps=1)
    finally:
        torch.set_num_threads(previous)


# --- no private ATen, no instructions another machine lacks --------------------------------

def test_sources_use_no_private_aten_api():
    for path in sorted(_build.SOURCE_DIR.iterdir()):
        text = path.read_text()
        assert "at::native" not in text and "namespace native" not in text, path.name


@cpp
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_library_links_no_private_aten_symbol():
    symbols = subprocess.run(["nm", "-D", "-C", "--undefined-only", str(_library())],
                             capture_output=True, text=True, check=True).stdout
    assert "at::native::" not in symbols


@cpp
@needs_x86_objdump
def test_library_has_no_avx512_instructions():
    """A library built on an AVX-512 machine may be loaded by an AVX2 one sharing the cache."""
    registers = _registers(_library())
    assert "zmm" not in registers
    if _build.instruction_set() == "avx2":
        assert "ymm" in registers    # the AVX2 build really is vectorised


# --- the flag choice per CPU ----------------------------------------------------------------

ZEN3 = {"sse2", "avx", "avx2", "fma", "bmi2"}
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_bf16", "amx_tile", "avx512_fp16"}
OLD_X86 = {"sse2", "sse4_2", "avx"}
GRAVITON = {"fp", "asimd", "sve", "bf16"}


def _pretend(monkeypatch, machine, flags, isa=None):
    monkeypatch.setattr(_build, "_machine", lambda: machine)
    monkeypatch.setattr(_build, "_cpu_flags", lambda: set(flags))
    if isa is None:
        monkeypatch.delenv("SINCFB_ISA", raising=False)
    else:
        monkeypatch.setenv("SINCFB_ISA", isa)


@pytest.mark.parametrize("machine, flags, want", [
    ("x86_64", ZEN3, "avx2"), ("x86_64", ZEN4, "avx2"), ("x86_64", SAPPHIRE_RAPIDS, "avx2"),
    ("x86_64", OLD_X86, "baseline"), ("aarch64", GRAVITON, "baseline"),
    ("x86_64", set(), "baseline")])
def test_instruction_set_follows_the_cpu(monkeypatch, machine, flags, want):
    _pretend(monkeypatch, machine, flags)
    assert _build.instruction_set() == want
    flags_used = _build.compiler_flags()
    assert ("-mavx2" in flags_used) == (want == "avx2")
    assert not any("avx512" in f or "native" in f or f.startswith("-mcpu") for f in flags_used)


def test_avx512_and_avx2_machines_share_one_library_and_older_cpus_do_not(monkeypatch):
    keys = {}
    for label, machine, flags in (("zen4", "x86_64", ZEN4), ("zen3", "x86_64", ZEN3),
                                  ("spr", "x86_64", SAPPHIRE_RAPIDS), ("old", "x86_64", OLD_X86),
                                  ("arm", "aarch64", GRAVITON)):
        _pretend(monkeypatch, machine, flags)
        keys[label] = _build.extension_name(compiler="c++: test")
    assert keys["zen4"] == keys["zen3"] == keys["spr"]     # the same AVX2 code suits all three
    assert len({keys["zen3"], keys["old"], keys["arm"]}) == 3


def test_forcing_the_instruction_set(monkeypatch):
    _pretend(monkeypatch, "x86_64", ZEN4, isa="baseline")
    assert _build.instruction_set() == "baseline"
    _pretend(monkeypatch, "x86_64", OLD_X86, isa="avx2")
    with pytest.raises(RuntimeError, match="no AVX2"):
        _build.instruction_set()                  # it would die of an illegal instruction
    _pretend(monkeypatch, "x86_64", ZEN3, isa="avx512")
    with pytest.raises(ValueError, match="SINCFB_ISA"):
        _build.instruction_set()


# --- the self-test at load ------------------------------------------------------------------

class _Corrupted:
    """``torch.ops.sincfb_cpu`` with one kernel made to return wrong numbers or to raise."""

    def __init__(self, kernel, how):
        self._real, self._kernel, self._how = torch.ops.sincfb_cpu, kernel, how

    def __getattr__(self, name):
        real = getattr(self._real, name)
        if name != self._kernel:
            return real

        def corrupted(*args):
            if self._how == "raise":
                raise RuntimeError("mkldnn_matmul: this CPU lacks avx512bw")
            result = real(*args)
            if name == "filterbank_forward":
                args[6].mul_(1.001)                  # the pooled output, written in place
            elif name == "filterbank_backward":
                args[5].add_(1e-3)                   # grad_x, written in place
            return result
        return corrupted


@pytest.fixture
def fresh_self_tests(monkeypatch):
    """Self-tests that run again in the test, and pass again once its patches are undone."""
    cpu_backend.SELF_TEST.reset()
    fft_backend.CPP_SELF_TEST.reset()
    yield
    monkeypatch.undo()
    cpu_backend.SELF_TEST.reset()
    fft_backend.CPP_SELF_TEST.reset()
    assert cpu_backend.cpu_backend_ready() and fft_backend.CPP_SELF_TEST.passed()


@cpp
@pytest.mark.parametrize("kernel, how", [("filterbank_forward", "wrong"),
                                         ("filterbank_backward", "wrong"),
                                         ("filterbank_forward", "raise")])
def test_failed_self_test_disables_cpu_and_auto_falls_back(monkeypatch, fresh_self_tests,
                                                           kernel, how):
    corrupted = _Corrupted(kernel, how)
    monkeypatch.setattr(cpu_backend, "_ops", lambda: corrupted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_backend("auto", "cpu", 251) == "reference"
        layer = FusedSincFilterbank(4, 31, pool_bins=4)
        out = layer(torch.randn(2, 1, 300))
        resolve_backend("auto", "cpu", 251)
    assert torch.isfinite(out).all()
    messages = [str(w.message) for w in caught if "self-test" in str(w.message)]
    assert len(messages) == 1 and "'cpu'" in messages[0], messages
    reason = unavailable_backends("cpu")["cpu"]
    assert "self-test failed" in reason
    assert "last ran: 'reference'" in repr(layer) and "cpu" in repr(layer)
    with pytest.raises(RuntimeError, match="'cpu' is not available.*self-test"):
        FusedSincFilterbank(4, 31, pool_bins=4, backend="cpu")(torch.randn(2, 1, 300))


@cpp
def test_failed_fft_kernel_self_test_falls_back_to_tensor_ops(monkeypatch, fresh_self_tests):
    def broken(*args):
        raise RuntimeError("illegal instruction")

    class Ops:
        def __getattr__(self, name):
            return broken if name == "fft_filterbank_forward" else getattr(torch.ops.sincfb_cpu,
                                                                           name)

    monkeypatch.setattr(torch.ops, "sincfb_cpu", Ops(), raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fft_backend._cpu_kernels(torch.device("cpu")) is None
        check_against_composite("fft", Shape(2, 1300, 4, 601, 9), True, torch.float64, 1e-9,
                                steps=1)
    assert sum("tensor-op path" in str(w.message) for w in caught) == 1


# --- build failures: one warning, a working fallback ----------------------------------------

def test_missing_compiler_is_one_warning_and_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SINCFB_CACHE_DIR", str(tmp_path / "cache"))
    _build.reset()
    cpu_backend.SELF_TEST.reset()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert not _build.load_cpu_extension()
            assert resolve_backend("auto", "cpu", 251) == "reference"
            out = FusedSincFilterbank(3, 31, pool_bins=4)(torch.randn(1, 1, 100))
        assert torch.isfinite(out).all()
        messages = [str(w.message) for w in caught if "could not be built" in str(w.message)]
        assert len(messages) == 1 and "no usable C++ compiler" in messages[0]
        assert "no usable C++ compiler" in unavailable_backends("cpu")["cpu"]
    finally:
        monkeypatch.undo()
        _build.reset()
        cpu_backend.SELF_TEST.reset()
        assert _build.load_cpu_extension()


def test_unwritable_cache_directory_builds_in_the_temporary_folder(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")          # unwritable even for root, unlike chmod
    monkeypatch.setenv("SINCFB_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(_build, "_fallback_cache_dir", lambda: tmp_path / "fallback")
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        folder = _build.build_directory("sincfb_cpu_test")
    assert folder.is_dir() and folder.is_relative_to(tmp_path / "fallback")


def test_no_writable_folder_at_all_is_a_clear_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SINCFB_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(_build, "_fallback_cache_dir", lambda: blocker / "fallback")
    with pytest.raises(RuntimeError, match="SINCFB_CACHE_DIR"):
        _build.build_directory("sincfb_cpu_test")
