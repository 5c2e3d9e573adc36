"""sincfb: a fused, hand-differentiated sinc filterbank for SincNet-style audio front-ends.

``FusedSincFilterbank`` computes ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` as one
registered PyTorch operation (``torch.ops.sincfb.filterbank``) with several backends behind it.
"""
from .backends import available_backends, resolve_backend
from .filters import mel_init, sinc_filters
from .modules import FusedSincFilterbank, SincConv
from .ops import fused_sinc_filterbank
from .reference import reference_filterbank

__all__ = ["FusedSincFilterbank", "SincConv", "fused_sinc_filterbank", "reference_filterbank",
           "sinc_filters", "mel_init", "available_backends", "resolve_backend"]
__version__ = "0.1.0"
