"""Build and load the C++ CPU kernels (``sincfb/csrc``) on first use, cached per machine.

The kernels register the ``torch.ops.sincfb_cpu`` library. They are compiled once with
``torch.utils.cpp_extension.load`` (which needs a C++ compiler and ninja) into a cache directory
keyed by the sources, the compiler flags and the torch version, so later processes only load the
shared library. If anything goes wrong the error is kept, :func:`load_cpu_extension` returns False
and one warning says why; the 'cpu' backend then reports itself unavailable and ``backend='auto'``
moves on to the next backend.

Environment: ``SINCFB_CACHE_DIR`` overrides the cache directory (default
``$XDG_CACHE_HOME/sincfb`` or ``~/.cache/sincfb``); ``SINCFB_NO_CPP=1`` skips the build.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

__all__ = ["SOURCE_DIR", "SOURCES", "cache_dir", "compiler_flags", "extension_name",
           "load_cpu_extension", "build_error", "reset"]

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = ("products.cpp", "filterbank.cpp", "fft_filters.cpp", "register.cpp")
_HEADERS = ("ops.h", "tiles.h", "epilogue.h")

_lock = threading.Lock()
_state: dict = {"loaded": None, "error": None, "warned": False}


def cache_dir() -> Path:
    """Where compiled kernels are kept (one subdirectory per torch version and build)."""
    explicit = os.environ.get("SINCFB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sincfb"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compiler_flags() -> list[str]:
    """-O3 and OpenMP (``at::parallel_for`` is an OpenMP region compiled into our code), plus AVX2
    and FMA when this CPU has them. No -march=native (a cache directory may be shared by different
    machines; the flags are part of the cache key) and no -ffast-math (it breaks NaN semantics).
    -ffp-contract=off keeps ``zhat * gamma + beta`` rounded as the reference rounds it, and the same
    in every pass that decides the ReLU mask. The heavy products run in oneDNN or BLAS, which pick
    their own instruction set at run time."""
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-ffp-contract=off"]
    if {"avx2", "fma"} <= _cpu_flags():
        flags += ["-mavx2", "-mfma"]
    return flags


# Tried in order: the kernels call ATen's oneDNN matmul for float32 GEMMs (an exported but
# header-less ATen function); if that cannot be built or linked, they fall back to ATen's BLAS.
_VARIANTS = ([], ["-DSINCFB_NO_ONEDNN"])


def extension_name(extra_flags: tuple[str, ...] = ()) -> str:
    """``sincfb_cpu_<digest>``: the digest covers sources, headers, flags and the torch version."""
    digest = hashlib.sha256()
    for name in SOURCES + _HEADERS:
        digest.update(name.encode())
        digest.update((SOURCE_DIR / name).read_bytes())
    digest.update(" ".join(compiler_flags() + list(extra_flags)).encode())
    digest.update(torch.__version__.encode())
    return f"sincfb_cpu_{digest.hexdigest()[:12]}"


def _ensure_ninja_on_path() -> None:
    """torch's JIT builder calls ``ninja`` from PATH; a venv's ninja is not on PATH when the venv's
    python runs without activation (as ``make test`` does), so add its directory."""
    if shutil.which("ninja"):
        return
    candidates = [Path(sys.executable).parent]
    try:
        import ninja  # the PyPI package ships the binary
        candidates.insert(0, Path(ninja.BIN_DIR))
    except (ImportError, AttributeError):
        pass
    for directory in candidates:
        if (directory / "ninja").exists():
            os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"
            return


def _compile_variant(extra_flags: list[str]) -> None:
    from torch.utils import cpp_extension

    name = extension_name(tuple(extra_flags))
    build_directory = cache_dir() / f"torch-{torch.__version__}" / name
    build_directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_build(build_directory):
        cpp_extension.load(name=name, sources=[str(SOURCE_DIR / s) for s in SOURCES],
                           extra_cflags=compiler_flags() + extra_flags, extra_ldflags=["-fopenmp"],
                           build_directory=str(build_directory), is_python_module=False,
                           verbose=bool(os.environ.get("SINCFB_VERBOSE_BUILD")))


@contextmanager
def _exclusive_build(build_directory: Path):
    """One build per folder across processes, immune to killed builders.

    torch's own builder marks a folder busy with a plain ``lock`` file and waits for it to vanish,
    so a build killed by Ctrl-C leaves every later process waiting forever. An ``flock`` is
    released by the kernel when its holder dies: whoever holds ours knows any ``lock`` file left in
    the folder is stale, and removes it.
    """
    with open(build_directory / "sincfb.flock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (build_directory / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile() -> None:
    _ensure_ninja_on_path()
    errors = []
    for extra_flags in _VARIANTS:
        try:
            _compile_variant(extra_flags)
            return
        except Exception as error:  # try the next variant, report all if none works
            errors.append(f"{' '.join(extra_flags) or 'default'}: {type(error).__name__}: {error}")
    raise RuntimeError("; ".join(errors))


def load_cpu_extension() -> bool:
    """Build (first time) and load the kernels; True when ``torch.ops.sincfb_cpu`` is usable.

    Thread-safe and idempotent; a failure is remembered (see :func:`build_error`) and warned about
    once per process.
    """
    with _lock:
        if _state["loaded"] is None:
            try:
                if os.environ.get("SINCFB_NO_CPP"):
                    raise RuntimeError("disabled by SINCFB_NO_CPP")
                _compile()
                _state["loaded"] = True
            except Exception as error:  # any build or load failure means: no C++ backend
                _state["loaded"], _state["error"] = False, f"{type(error).__name__}: {error}"
        if not _state["loaded"] and not _state["warned"]:
            _state["warned"] = True
            warnings.warn(
                "sincfb: the C++ CPU backend could not be built or loaded, so backend='auto' "
                "uses the next available backend ('fft' for long filters, else 'reference'), "
                f"which is slower and needs more memory. Reason: {_state['error'][:2000]} "
                "(set SINCFB_VERBOSE_BUILD=1 to see the compiler output)",
                RuntimeWarning, stacklevel=3)
        return bool(_state["loaded"])


def build_error() -> Optional[str]:
    """Why the kernels are unavailable, or None when they loaded (or were not tried yet)."""
    return _state["error"]


def reset() -> None:
    """Forget the outcome of the last attempt (tests use it to exercise the fallback)."""
    with _lock:
        _state.update(loaded=None, error=None, warned=False)
