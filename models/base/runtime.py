"""Where a model runs: the device named on the command line, and bf16 autocast on GPUs."""
from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["resolve_device", "autocast"]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' is the local CUDA device when there is one, else the CPU. A device that does not
    exist here is a ``ValueError`` in one line."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device name; use auto, cpu, cuda or "
                         "cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is usable on this machine; use "
                             "--device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                             "CUDA GPU(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled`` (``--amp``: on by default on GPUs only),
    else nothing."""
    if enabled:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()
