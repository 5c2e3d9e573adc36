"""Model registry, factory and the compact configuration used for CPU work, demos and tests."""
from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Any

from torch import nn

from .melresnet import MelResNet
from .mssincresnet import MSSincResNet, SincResNet
from .sincnet import SincNet

__all__ = ["MODELS", "COMPACT", "build_model", "compact_config", "canonical_name"]

#: Every model by its registry name (lower case); :func:`build_model` accepts any spelling of it.
MODELS = MappingProxyType({
    "mssincresnet": MSSincResNet,
    "sincnet": SincNet,
    "sincresnet": SincResNet,
    "melresnet": MelResNet,
})

#: The sizes of the compact configuration: half a second at 16 kHz, 40 filters per bank, filters of
#: 31/63/127 taps and 64 bins. 40 x 64 is the smallest image, in round numbers, whose ResNet-18
#: conv5 map (2 x 2) still takes the paper's spatial pyramid; a forward+backward of 8 clips of
#: MS-SincResNet takes about 0.2 s on two idle CPU cores (reference backend).
COMPACT = MappingProxyType({
    "sample_rate": 16000,
    "clip_samples": 8000,
    "num_filters": 40,
    "kernel_sizes": (31, 63, 127),
    "pool_bins": 64,
    "hidden": 128,
})


def canonical_name(name: str) -> str:
    """Registry key for ``name`` ('MS-SincResNet', 'ms_sincresnet' -> 'mssincresnet')."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return key


def compact_config(name: str = "mssincresnet") -> dict[str, Any]:
    """Constructor arguments (all but ``num_classes``) of the compact configuration of ``name``.

    Every model sees the same clips (``COMPACT``); the ResNet models the same 40 x 64 image size;
    SincNet keeps its architecture with fewer filters and 256-wide fully-connected layers.
    """
    c = COMPACT
    key = canonical_name(name)
    shared = {"sample_rate": c["sample_rate"], "clip_samples": c["clip_samples"]}
    if key == "mssincresnet":
        return {**shared, "num_filters": c["num_filters"], "kernel_sizes": c["kernel_sizes"],
                "pool_bins": c["pool_bins"], "hidden": c["hidden"]}
    if key == "sincresnet":   # the middle length, as the paper's single scale sits among its three
        return {**shared, "num_filters": c["num_filters"], "kernel_size": c["kernel_sizes"][1],
                "pool_bins": c["pool_bins"], "hidden": c["hidden"]}
    if key == "melresnet":
        return {**shared, "n_mels": c["num_filters"], "frames": c["pool_bins"], "n_fft": 256,
                "hidden": c["hidden"]}
    if key == "sincnet":
        return {**shared, "cnn_n_filt": (c["num_filters"], 32, 32),
                "cnn_len_filt": (c["kernel_sizes"][-1], 5, 5), "cnn_max_pool_len": (3, 3, 3),
                "fc_lay": (256, 256, 256)}
    raise ValueError(f"model {name!r} has no compact configuration; add one to "
                     "models.registry.compact_config")


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build model ``name`` (see :data:`MODELS`) with ``num_classes`` outputs; ``kwargs`` go to its
    constructor (e.g. ``**compact_config(name)`` for the compact configuration). A keyword the
    constructor does not take is a ``ValueError`` (settings come from files), not a TypeError."""
    model = MODELS[canonical_name(name)]
    accepted = inspect.signature(model).parameters
    unknown = sorted(str(key) for key in kwargs if key not in accepted)
    if unknown:
        raise ValueError(f"{model.__name__} has no setting {unknown[0][:60]!r}; it takes "
                         f"{[key for key in accepted if key != 'num_classes']}")
    return model(num_classes, **kwargs)
