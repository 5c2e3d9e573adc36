"""MS-SincResNet and the baselines of its paper's Table 1, on the fused sinc filterbank of sincfb.

Every model takes clips of raw audio, (B, N) or (B, 1, N), and returns logits; each has
``representation(x)`` (the learned or fixed front-end output), ``embed(x)`` (the pooled feature
the classifier reads) and ``classify(features)``. Defaults are the paper's sizes;
``size_config(name, size)`` gives the ``compact`` (demos, tests) and ``laptop`` (real music on a
CPU) configurations; ``compact_config(name)`` is the compact one.

The names below are imported on first use, so that ``import models`` (and the command line's
``--help``) does not load torch.
"""
import importlib

_EXPORTS = {
    "AudioClassifier": "common", "count_parameters": "common", "MelResNet": "melresnet",
    "MSSincResNet": "mssincresnet", "SincResNet": "mssincresnet", "COMPACT": "registry",
    "MODELS": "registry", "build_model": "registry", "canonical_name": "registry",
    "compact_config": "registry", "LAPTOP": "registry", "SIZES": "registry",
    "size_config": "registry", "SincNet": "sincnet", "BackboneWeightsUnavailable": "trunk",
    "ResNetTrunk": "trunk", "trunk_output_size": "trunk",
}

__all__ = ["MSSincResNet", "SincNet", "SincResNet", "MelResNet", "build_model", "MODELS",
           "COMPACT", "compact_config", "LAPTOP", "SIZES", "size_config", "canonical_name",
           "count_parameters", "AudioClassifier",
           "ResNetTrunk", "trunk_output_size", "BackboneWeightsUnavailable"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
