"""What the benchmark scripts share: the record that opens every run's JSON (machine, versions,
commit, command line, load), ratios, command-line helpers and JSON output (DESIGN.md §6).

Each script (``bench.harness`` for W1/W2, ``bench.model_bench``, ``bench.interleaved``,
``bench.crossover``, ``bench.export_bench``) adds its own fields to :func:`run_metadata`'s record.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

import sincfb
from bench.machine import cpu_info
from models.fileio import atomic_write_json

__all__ = ["SAMPLE_RATE", "REPOSITORY", "package_version", "git_commit", "device_name",
           "device_slug", "load_average", "measured_auto_choices", "run_metadata", "ratio",
           "csv_list", "default_device", "add_run_arguments", "results_path", "write_json_atomic",
           "BF16Autocast"]

#: The sample rate of every benchmark's audio (the paper's, MS-SincResNet's).
SAMPLE_RATE = 16000

#: The repository root: git's pathspecs (the bench/results exclusion) are relative to it.
REPOSITORY = Path(__file__).resolve().parent.parent

#: Environment variables that change how CPU timings behave (OpenMP's threads and waiting).
TIMING_ENVIRONMENT = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")


def package_version(name: str) -> Optional[str]:
    """Installed version of a distribution, None if absent (no import, so no GPU probing)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(where: Path) -> str:
    """HEAD of the repository at ``where``, '-dirty' if modified outside bench/results (results
    written by earlier runs do not make the measured code dirty); 'unknown' outside git."""
    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=where, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".", ":(exclude)bench/results")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def device_name(device: str) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def device_slug(name: str) -> str:
    """A file-name friendly form of a device name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "device"


def load_average() -> Optional[list[float]]:
    """The 1-, 5- and 15-minute load averages (other processes distort CPU timings; these say
    whether they ran), None where the system has none."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def measured_auto_choices(device: str) -> dict:
    """The choices 'auto' measured on this machine for large problems (problem key -> backend),
    from the calibration cache: the static rule does not hold for problems above
    ``calibration.MIN_WORK`` unless ``SINCFB_AUTO=static``."""
    from sincfb.backends import calibration

    return {"mode": calibration.mode(),
            "choices": calibration.cached_choices(torch.device(device).type)}


def run_metadata(module: str, argv: Sequence[str], device: str = "cpu",
                 threads: Optional[int] = None, versions: Optional[dict] = None) -> dict:
    """The record every run's JSON opens with: device, CPU, threads, load at the start, the
    OpenMP settings in force, versions (python, torch, sincfb and ``versions``), date, commit and
    the command line (``python -m <module> <argv>``)."""
    return {
        "device": device_name(device), "device_type": torch.device(device).type,
        "cpu": cpu_info(), "threads": threads or torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "loadavg_start": load_average(),
        # on a shared machine OpenMP's default spin-waiting makes 2-thread runs erratic;
        # OMP_WAIT_POLICY=PASSIVE (set before Python starts) avoids it: record what was in force
        "environment": {name: os.environ.get(name) for name in TIMING_ENVIRONMENT},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "sincfb": sincfb.__version__, **(versions or {})},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": git_commit(REPOSITORY),
        "command": shlex.join([Path(sys.executable).name, "-m", module, *argv]),
    }


def ratio(numerator, denominator) -> Optional[float]:
    """``numerator / denominator``, None when either is missing or zero (a failed case)."""
    return numerator / denominator if numerator and denominator else None


def csv_list(kind: Callable = str) -> Callable[[str], list]:
    """argparse type: a comma-separated list of ``kind`` (blank items dropped)."""
    return lambda text: [kind(item.strip()) for item in text.split(",") if item.strip()]


def default_device(device: Optional[str]) -> str:
    """``device``, else 'cuda' when a GPU is present, else 'cpu'."""
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _threads(text: str) -> int:
    """argparse type of --threads: a whole number >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads must be >= 1, got {value}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """The options every benchmark run takes: --device (default: :func:`default_device`),
    --threads (default: torch's), --out (``out_help`` says where it goes by default), --quiet."""
    parser.add_argument("--device", default=default_device(None),
                        help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--threads", type=_threads, default=torch.get_num_threads(),
                        help="torch threads (default: torch's default)")
    parser.add_argument("--out", type=Path, help=out_help)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


class BF16Autocast(torch.nn.Module):
    """Runs the wrapped module under bf16 autocast (torch.compile traces through the context):
    the baselines' mixed-precision variants."""

    def __init__(self, inner: torch.nn.Module, device_type: str):
        super().__init__()
        self.inner = inner
        self.device_type = device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped module's output, computed under ``torch.autocast(..., bfloat16)``."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.inner(x)


def results_path(meta: dict, prefix: str = "") -> Path:
    """bench/results/<prefix><device-slug>-<size>-<date>.json (relative to the working
    directory)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{prefix}{device_slug(meta['device'])}-{meta['size']['name']}-{stamp}.json"
    return Path("bench") / "results" / name


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`models.fileio.atomic_write_json`)."""
    atomic_write_json(path, data, indent=2)
