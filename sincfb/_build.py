"""Build and load the C++ CPU kernels (``sincfb/csrc``) on first use, cached per machine.

The kernels register the ``torch.ops.sincfb_cpu`` library. They are compiled once with
``torch.utils.cpp_extension.load`` (which needs a C++ compiler and ninja) into a cache directory
keyed by everything that changes the build: the sources and their absolute location, the
compiler and its flags, the machine architecture and the torch version. Later processes only load
the shared library. If anything goes wrong the error is kept, :func:`load_cpu_extension` returns
False and one warning says why; the 'cpu' backend then reports itself unavailable and
``backend='auto'`` moves on to the next backend.

The kernels call only public ATen API (``at::mm_out`` for their GEMMs, ``at::parallel_for``,
``at::fft_*``), so the library runs wherever torch runs. Our own loops are compiled for one of two
instruction-set levels (:func:`instruction_set`): ``avx2`` (AVX2 + FMA, on x86-64 CPUs that have
both) or ``baseline`` (the compiler's default target: SSE2 on x86-64, NEON on aarch64). Neither
uses AVX-512, so a library built on an AVX-512 machine also runs on an AVX2 one that shares its
cache folder; a machine without AVX2 gets other flags, hence another cache key and library.

Environment:

- ``SINCFB_CACHE_DIR``: the cache directory (default ``$XDG_CACHE_HOME/sincfb`` or
  ``~/.cache/sincfb``; when it cannot be written, a folder under the system's temporary directory);

A library is loaded only from folders no one else can write: sincfb creates its folders with mode
0700, and an existing cache folder (or a folder in it) that belongs to another user, or that its
group or others may write, is refused with a warning and never used (see :func:`folder_problem`):
a library planted there would run as the user who loads it.
- ``SINCFB_ISA``: ``auto`` (default), ``avx2`` or ``baseline``, to force the instruction set;
- ``SINCFB_NO_CPP=1``: skip the build (the 'cpu' backend is then unavailable);
- ``SINCFB_VERBOSE_BUILD=1``: show the compiler's output.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

__all__ = ["SOURCE_DIR", "SOURCES", "INSTRUCTION_SETS", "cache_dir", "instruction_set",
           "compiler_flags", "kernel_digest", "extension_name", "folder_problem",
           "build_directory", "load_cpu_extension", "build_error", "reset",
           "quiet_cuda_home_notice"]

SOURCE_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = ("products.cpp", "filterbank.cpp", "fft_filters.cpp", "register.cpp")
_HEADERS = ("ops.h", "tiles.h", "epilogue.h")
INSTRUCTION_SETS = ("avx2", "baseline")

_lock = threading.Lock()
_state: dict = {"loaded": None, "error": None, "warned": False}


def cache_dir() -> Path:
    """Where compiled kernels are kept (one subdirectory per torch version and build)."""
    explicit = os.environ.get("SINCFB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sincfb"


def _fallback_cache_dir() -> Path:
    """A per-user folder under the temporary directory, for a cache directory we cannot write.
    Its name can be guessed, so another user may create it first: :func:`build_directory`
    uses it only when :func:`folder_problem` finds it private."""
    return Path(tempfile.gettempdir()) / f"sincfb-cache-{os.getuid()}"


def _cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU as Linux reports them (empty when unknown)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _machine() -> str:
    return platform.machine().lower()


def _has_avx2() -> bool:
    return _machine() in ("x86_64", "amd64") and {"avx2", "fma"} <= _cpu_flags()


def instruction_set() -> str:
    """The instruction-set level the kernels are built for: ``SINCFB_ISA`` if set, else ``avx2``
    on an x86-64 CPU with AVX2 and FMA and ``baseline`` anywhere else.

    Forcing ``avx2`` on a CPU without it is refused (the library would die of an illegal
    instruction); forcing ``baseline`` on any CPU builds the portable code an older or non-x86
    CPU runs, which is how the tests exercise that path on every machine.
    """
    forced = os.environ.get("SINCFB_ISA", "auto").strip().lower() or "auto"
    if forced not in INSTRUCTION_SETS + ("auto",):
        raise ValueError(f"SINCFB_ISA must be one of auto, {', '.join(INSTRUCTION_SETS)}; "
                         f"got {forced!r}")
    if forced == "avx2" and not _has_avx2():
        raise RuntimeError("SINCFB_ISA=avx2, but this CPU has no AVX2 and FMA")
    if forced != "auto":
        return forced
    return "avx2" if _has_avx2() else "baseline"


def compiler_flags(isa: Optional[str] = None) -> list[str]:
    """-O3 and OpenMP (``at::parallel_for`` is an OpenMP region compiled into our code), plus
    ``-mavx2 -mfma`` for the ``avx2`` level. No -march=native (a cache directory may be shared by
    different machines) and no -ffast-math (it breaks NaN semantics). -ffp-contract=off keeps
    ``zhat * gamma + beta`` rounded as the reference rounds it, and the same in every pass that
    decides the ReLU mask. The GEMMs run in torch's BLAS, which picks its own instruction set at
    run time. -fno-trapping-math lets GCC turn the epilogue's selects into vector blends (it
    assumes no floating-point exception traps, which torch never enables; no result changes)."""
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    if (isa or instruction_set()) == "avx2":
        flags += ["-mavx2", "-mfma"]
    return flags


def _compiler() -> str:
    """The compiler torch's builder calls, and the first line of its ``--version``."""
    command = os.environ.get("CXX", "c++")
    try:
        result = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"no usable C++ compiler ({command!r}: {error}); install g++ or "
                           "clang++, or set CXX") from None
    if result.returncode != 0:
        raise RuntimeError(f"the C++ compiler {command!r} does not run: {result.stderr.strip()}")
    return f"{command}: {result.stdout.splitlines()[0] if result.stdout else '?'}"


def _digest_sources(digest) -> None:
    for name in SOURCES + _HEADERS:
        digest.update(name.encode())
        digest.update((SOURCE_DIR / name).read_bytes())


def kernel_digest(isa: Optional[str] = None) -> str:
    """12 hex digits of the C++ sources and headers and the compiler flags: what makes two builds
    compute the same way (wherever they are built). ``auto``'s calibration keys its measured
    choices by it, so a change of the kernels re-times them."""
    digest = hashlib.sha256()
    _digest_sources(digest)
    digest.update(b"\0" + " ".join(compiler_flags(isa)).encode())
    return digest.hexdigest()[:12]


def extension_name(isa: Optional[str] = None, compiler: Optional[str] = None) -> str:
    """``sincfb_cpu_<digest>``. The digest covers every input of the build: the sources and
    headers, the folder they are in (torch's build file holds absolute paths, so two checkouts
    must not share a build folder), the flags, the compiler, the machine architecture and the
    torch version."""
    digest = hashlib.sha256()
    digest.update(str(SOURCE_DIR).encode())
    _digest_sources(digest)
    for part in (" ".join(compiler_flags(isa)), compiler or _compiler(), _machine(),
                 torch.__version__):
        digest.update(b"\0" + part.encode())
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


def folder_problem(folder: Path) -> Optional[str]:
    """Why another user could put files into the existing ``folder`` (None when they cannot): it
    or the link naming it belongs to another user, or its group or others may write it."""
    me = os.geteuid()
    link = os.lstat(folder)
    if stat.S_ISLNK(link.st_mode) and link.st_uid != me:
        return f"it is a link owned by user id {link.st_uid}"
    info = os.stat(folder)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a folder"
    if info.st_uid != me:
        return f"it belongs to user id {info.st_uid}, not to this user ({me})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its group or others may write it (mode {stat.filemode(info.st_mode)})"
    return None


def _private_folder(root: Path, folder: Path) -> Optional[str]:
    """Create ``folder`` (under ``root``) with mode 0700 where missing, then check ``root`` and
    each folder from it down to ``folder``; a reason to refuse it, or None when it is private
    and writable."""
    try:
        inner = [root / part for part in reversed(folder.relative_to(root).parents[:-1])]
        for step in (root, *inner, folder):      # checked before anything is made inside it
            step.mkdir(mode=0o700, parents=True, exist_ok=True)
            problem = folder_problem(step)
            if problem:
                return f"{step}: {problem}"
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
        return None
    except OSError as error:
        return f"{folder}: cannot be written ({error.strerror or error})"


def build_directory(name: str) -> Path:
    """The folder of the build ``name``: under :func:`cache_dir`, or under the temporary
    directory (with one warning) when the cache directory cannot be written or is not private
    (:func:`folder_problem`); a folder someone else controls is never used."""
    refused = []
    for root in (cache_dir(), _fallback_cache_dir()):
        folder = root / f"torch-{torch.__version__}" / name
        problem = _private_folder(root, folder)
        if problem is None:
            if refused:
                warnings.warn(f"sincfb: not using the cache directory ({refused[0]}); building "
                              f"the C++ kernels in {root} instead (set SINCFB_CACHE_DIR to "
                              "choose another folder)", RuntimeWarning, stacklevel=4)
            return folder
        refused.append(problem)
    raise RuntimeError(f"no private cache folder for the C++ kernels: {'; '.join(refused)} "
                       "(set SINCFB_CACHE_DIR to a folder only you can write)")


# What torch.utils.cpp_extension logs when it is imported by a CUDA build of torch on a machine
# without a usable GPU but with a CUDA toolkit folder: noise for a CPU build (torch 2.11, line
# ``logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", cuda_home)``).
_CUDA_HOME_NOTICE = "No CUDA runtime is found, using CUDA_HOME='%s'"


def _not_the_cuda_home_notice(record: logging.LogRecord) -> bool:
    return record.msg != _CUDA_HOME_NOTICE


@contextmanager
def quiet_cuda_home_notice():
    """Drop torch's "No CUDA runtime is found, using CUDA_HOME=..." line while the block runs
    (it imports ``torch.utils.cpp_extension``); every other message of that module still shows.
    torch logs that line only where no CUDA GPU is usable, so it hides nothing on a GPU machine."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    logger.addFilter(_not_the_cuda_home_notice)
    try:
        yield
    finally:
        logger.removeFilter(_not_the_cuda_home_notice)


def _compile() -> None:
    with quiet_cuda_home_notice():
        from torch.utils import cpp_extension

    _ensure_ninja_on_path()
    isa = instruction_set()
    name = extension_name(isa)
    folder = build_directory(name)
    with _exclusive_build(folder):
        cpp_extension.load(name=name, sources=[str(SOURCE_DIR / s) for s in SOURCES],
                           extra_cflags=compiler_flags(isa), extra_ldflags=["-fopenmp"],
                           build_directory=str(folder), is_python_module=False,
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
