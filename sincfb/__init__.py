"""sincfb: a fused, hand-differentiated sinc filterbank for SincNet-style audio front-ends.

``FusedSincFilterbank`` computes ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` as one
registered PyTorch operation (``torch.ops.sincfb.filterbank``) with several backends behind it.
"""
from ._version import __version__
from .backends import available_backends, resolve_backend, unavailable_backends
from .filters import hz_to_mel, mel_init, mel_to_hz, sinc_filters
from .modules import FusedSincFilterbank, SincConv, filterbanks, sinc_layers
from .ops import fused_sinc_filterbank
from .reference import reference_filterbank

__all__ = ["FusedSincFilterbank", "SincConv", "fused_sinc_filterbank", "reference_filterbank",
           "sinc_filters", "mel_init", "hz_to_mel", "mel_to_hz", "filterbanks", "sinc_layers",
           "available_backends", "unavailable_backends", "resolve_backend"]
