"""``backend='auto'`` that knows the machine: time the candidates once on the real shape, cache.

Which of the direct product and the FFT is faster depends on the CPU (its BLAS path, its FFT
speed, its core count) as much as on the filter length: on a 2-core AMD EPYC (AVX-512) the FFT
overtook the C++ direct product near L = 500; on a 2-core Intel Xeon with AMX it was ahead from
L = 501 in training and from L = 251 in eval at B = 32 (BENCHMARKS.md). So, as cuDNN's
benchmark mode does, the first time 'auto' meets a large enough problem it times every
candidate backend (those the static rule would rank) on that shape, a forward and backward each
after a warm-up, and keeps the fastest; the choice is cached on disk, keyed by the device model,
the instruction sets (sincfb's build and ATen's), the C++ kernels' digest, the thread count
and the versions, so later processes only read it.

Under ``torch.compile`` the shape may be symbolic, so 'auto' follows the static rule there.
``SINCFB_AUTO`` fixes the choice for reproducible runs: ``calibrate`` (default), ``static``
(the measured crossover constants only, never a timing), or a backend name (always that one,
when it can run). Problems smaller than :data:`MIN_WORK` (tests, the compact CPU model) take the
static rule: timing them would cost more than any choice could save.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch

__all__ = ["Problem", "Decision", "MIN_WORK", "mode", "choose", "cached_choices",
           "last_decision", "cache_path", "forget"]

#: Multiply-adds of one direct product (B K N_out L / 2) below which 'auto' does not time.
MIN_WORK = 2e9
_MODES = ("calibrate", "static")
_lock = threading.Lock()
_decisions: dict = {}       # (device type, kernel size) -> Decision, the last one made


class Problem(NamedTuple):
    """The shape of one call of the operation: what the timing reproduces."""

    batch: int
    samples: int
    filters: int
    kernel_size: int
    pool_bins: int
    dtype: str
    training: bool

    @property
    def work(self) -> float:
        """Multiply-adds of one folded direct product."""
        return self.batch * self.filters * (self.samples - self.kernel_size + 1) * \
            (self.kernel_size + 1) / 2

    def key(self) -> str:
        """The cache key: exact sizes but the batch, which is bucketed to a power of two."""
        bucket = 1 << max(self.batch - 1, 0).bit_length()
        return (f"B~{bucket} N={self.samples} K={self.filters} L={self.kernel_size} "
                f"P={self.pool_bins} {self.dtype} {'train' if self.training else 'eval'}")


class Decision(NamedTuple):
    """What 'auto' chose and how: 'static rule', 'forced by SINCFB_AUTO', 'measured now' or
    'measured before' (with the seconds per candidate)."""

    backend: str
    how: str
    seconds: Optional[dict] = None

    def describe(self) -> str:
        """One line for the layer's ``repr``."""
        if not self.seconds:
            return self.how
        times = ", ".join(f"{name} {s * 1e3:.0f} ms" for name, s in sorted(self.seconds.items(),
                                                                          key=lambda kv: kv[1]))
        return f"{self.how}: {times}"


def mode() -> str:
    """``SINCFB_AUTO``: 'calibrate' (default), 'static' or a backend name."""
    return os.environ.get("SINCFB_AUTO", "calibrate").strip().lower() or "calibrate"


def _machine_key(device_type: str) -> str:
    from .. import _build
    from .._version import __version__

    if device_type == "cuda":
        model = torch.cuda.get_device_name()
    else:
        model = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as info:
                model = next((line.split(":", 1)[1].strip() for line in info
                              if line.startswith("model name")), model)
        except OSError:
            pass
        try:
            model += f" isa={_build.instruction_set()}"
        except (RuntimeError, ValueError):
            pass
        # ATen's vector path (ATEN_CPU_CAPABILITY can force AVX2 on an AVX-512 CPU): the naive
        # parts of the op and the FFT's pointwise work run on it, so it changes the timings
        model += f" aten={torch.backends.cpu.get_cpu_capability()}"
        # the C++ kernels' sources and flags: a change of the kernels re-times the choices
        model += f" kernels={_build.kernel_digest()}"
    return (f"{device_type}: {model}; threads={torch.get_num_threads()}; "
            f"torch {torch.__version__}; sincfb {__version__}")


def cache_path() -> Path:
    """The JSON file of the choices (beside the C++ build cache)."""
    from .. import _build

    return _build.cache_dir() / "auto-choices.json"


#: The most bytes of the choices file read: a real one holds a few hundred bytes per shape.
MAX_CACHE_BYTES = 1 << 20
_warned = {"cache": False}


def _is_choice(entry) -> bool:
    """``{"backend": name, "seconds": {name: seconds} or None}``, as :func:`_write_cache`
    writes it."""
    if not isinstance(entry, dict) or not isinstance(entry.get("backend"), str):
        return False
    seconds = entry.get("seconds")
    return seconds is None or isinstance(seconds, dict) and all(
        isinstance(name, str) and type(value) in (int, float) for name, value in seconds.items())


def _valid(data) -> bool:
    """Whether ``data`` has the shape of the file: machine -> problem key -> choice."""
    return isinstance(data, dict) and all(
        isinstance(choices, dict) and all(isinstance(k, str) and _is_choice(v)
                                          for k, v in choices.items())
        for choices in data.values())


def _read_cache() -> dict:
    """The choices file, or {} when it is missing, unreadable, too large or not of its shape;
    the last three are one warning per process and the file is then measured over again."""
    path = cache_path()
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CACHE_BYTES + 1)
    except OSError:
        return {}
    try:
        data = json.loads(raw) if len(raw) <= MAX_CACHE_BYTES else None
    except (ValueError, RecursionError):      # not JSON, not UTF-8, nested too deep
        data = None
    if _valid(data):
        return data
    if not _warned["cache"]:
        _warned["cache"] = True
        warnings.warn(f"sincfb: ignoring {path}: not a file of 'auto' backend choices (or larger "
                      f"than {MAX_CACHE_BYTES} bytes); the choices are measured again and the "
                      "file rewritten", RuntimeWarning, stacklevel=2)
    return {}


def _write_cache(machine: str, key: str, decision: Decision) -> None:
    """Add one choice to the cache atomically; a cache that cannot be written is only a cost
    (the next process measures again), never an error."""
    path = cache_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = _read_cache()
        data.setdefault(machine, {})[key] = {"backend": decision.backend,
                                             "seconds": decision.seconds}
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def _time_backend(backend: str, problem: Problem, device_type: str, repeats: int = 3) -> float:
    """Median seconds of one call (forward, and backward in training) of the registered operation
    on ``backend`` with random data of the problem's shape, after one warm-up call. 'auto' is
    resolved by :mod:`sincfb.ops`, which registered ``torch.ops.sincfb.filterbank`` first."""
    from ..arguments import OpInputs, default_precision
    from ..filters import mel_init

    dtype = getattr(torch, problem.dtype)
    x = torch.randn(problem.batch, 1, problem.samples, dtype=dtype, device=device_type,
                    requires_grad=problem.training)
    low, band = (t.to(device_type, dtype).requires_grad_(problem.training)
                 for t in mel_init(problem.filters, 16000.0))
    gamma = torch.ones(problem.filters, dtype=dtype, device=device_type)
    inputs = OpInputs(x=x, low_hz_=low, band_hz_=band, weight=gamma, bias=torch.zeros_like(gamma),
                      running_mean=gamma.clone(), running_var=gamma.clone(),
                      kernel_size=problem.kernel_size, sample_rate=16000.0, min_low_hz=50.0,
                      min_band_hz=50.0, pool_bins=problem.pool_bins, training=problem.training,
                      eps=1e-5, backend=backend, precision=default_precision(device_type),
                      keep_saved=problem.training)

    def call():
        out = torch.ops.sincfb.filterbank(*inputs)[0]
        if problem.training:
            out.sum().backward()
        if device_type == "cuda":
            torch.cuda.synchronize()

    return median_seconds(call, repeats)


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``call()`` over ``repeats`` calls after one warm-up call."""
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def choose(candidates: list[str], static: str, device_type: str, kernel_size: int,
           problem: Optional[Problem], timer: Callable = _time_backend) -> Decision:
    """The backend 'auto' runs for ``problem`` (None: the shape is unknown) among ``candidates``
    (the available backends the static rule ranks; ``static`` is its first choice), and how it
    was chosen."""
    forced = mode()
    if forced not in _MODES:
        decision = Decision(forced if forced in candidates else static,
                            f"forced by SINCFB_AUTO={forced}" if forced in candidates else
                            f"SINCFB_AUTO={forced} cannot run here: static rule")
    elif forced == "static" or problem is None or len(candidates) < 2 or problem.work < MIN_WORK:
        decision = Decision(static, "static rule")
    else:
        decision = _calibrated(candidates, device_type, problem, timer)
    _decisions[(device_type, kernel_size)] = decision
    return decision


def _calibrated(candidates, device_type, problem: Problem, timer) -> Decision:
    machine, key = _machine_key(device_type), problem.key()
    with _lock:
        saved = _read_cache().get(machine, {}).get(key)
        if saved and saved.get("backend") in candidates:
            return Decision(saved["backend"], "measured before on this machine",
                            saved.get("seconds"))
        seconds = {}
        with torch.enable_grad():
            for name in candidates:
                try:
                    seconds[name] = timer(name, problem, device_type)
                except Exception:   # noqa: BLE001 -- a backend that fails here is not chosen
                    seconds[name] = float("inf")
        decision = Decision(min(seconds, key=seconds.get), "measured now on this machine",
                            seconds)
        _write_cache(machine, key, decision)
        return decision


def cached_choices(device_type: str) -> dict:
    """This machine's measured choices from the disk cache, problem key -> backend (what 'auto'
    ran for large problems here, also in other processes; benchmarks record it)."""
    entries = _read_cache().get(_machine_key(device_type), {})
    return {key: entry.get("backend") for key, entry in sorted(entries.items())}


def last_decision(device_type: str, kernel_size: int) -> Optional[Decision]:
    """The last choice 'auto' made for this device type and filter length, if any."""
    return _decisions.get((device_type, kernel_size))


def forget() -> None:
    """Forget the choices of this process and whether it warned about the file (tests; the
    disk cache stays)."""
    _decisions.clear()
    _warned["cache"] = False
