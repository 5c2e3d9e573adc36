"""MS-SincResNet and the baselines of its paper's Table 1, on the fused sinc filterbank of sincfb.

Every model takes clips of raw audio, (B, N) or (B, 1, N), and returns logits; each has
``representation(x)`` (the learned or fixed front-end output), ``embed(x)`` (the pooled feature
the classifier reads) and ``classify(features)``. Defaults are the paper's sizes;
``compact_config(name)`` gives the small configuration used on CPUs.
"""
from .common import AudioClassifier, count_parameters
from .melresnet import MelResNet
from .mssincresnet import MSSincResNet, SincResNet
from .registry import COMPACT, MODELS, build_model, canonical_name, compact_config
from .sincnet import SincNet
from .trunk import BackboneWeightsUnavailable, ResNetTrunk, trunk_output_size

__all__ = ["MSSincResNet", "SincNet", "SincResNet", "MelResNet", "build_model", "MODELS",
           "COMPACT", "compact_config", "canonical_name", "count_parameters", "AudioClassifier",
           "ResNetTrunk", "trunk_output_size", "BackboneWeightsUnavailable"]
