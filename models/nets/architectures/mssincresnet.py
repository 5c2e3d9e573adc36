"""MS-SincResNet (Chang, Chen and Lee, ICMR 2021) and its single-scale baseline SincResNet."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from sincfb import FusedSincFilterbank

from ..common import (AudioClassifier, check_int_tuple, check_odd_lengths, check_positive_int,
                      check_sample_rate)
from ..registry import register_model
from ..trunk import IMAGENET_WIDTH, BackboneWeights, ResNetTrunk, check_image_size, trunk_sizes

__all__ = ["MSSincResNet", "SincResNet"]


def _sincresnet_sizes(table, kernels: dict) -> dict:
    """Both sinc ResNets at the compact and laptop sizes: the table's filters (of lengths
    ``kernels``), bins and head."""
    return {"num_filters": table["num_filters"], **kernels, "pool_bins": table["pool_bins"],
            "hidden": table["hidden"], **trunk_sizes(table)}


@register_model(lambda size, table: _sincresnet_sizes(table,
                                                    {"kernel_sizes": table["kernel_sizes"]}),
                summary=(("MS-SincResNet (paper: SPP head)", {"spp": True}),
                         ("MS-SincResNet (authors' release)", {"spp": False})), order=0)
class MSSincResNet(AudioClassifier):
    """Multi-scale SincNet front-end + ResNet-18, classifying clips of raw audio.

    ``layerNorm`` (LayerNorm over the clip's samples, weight and bias of shape (1, N)) -> three :class:`sincfb.FusedSincFilterbank`
    banks ``sincNet1..3`` (K filters of lengths ``kernel_sizes``, each sinc conv -> BatchNorm ->
    ReLU -> adaptive average pool to ``pool_bins``) -> stacked into a (B, 3, K, P) image ->
    ``resnet``: torchvision ResNet-18 (``resnet.model``) and its head (see :class:`ResNetTrunk`).

    ``spp=True`` is the paper's network (spatial pyramid pooling, then ``Linear(2560, hidden) ->
    ReLU -> Dropout -> Linear(hidden, num_classes)``); ``spp=False`` is the authors' released one
    (global average pool, ``resnet.model.fc = Linear(512, num_classes)``), whose state dict has
    exactly the authors' keys, so their checkpoint loads with ``strict=True``.

    Args:
        num_classes: number of classes (10 for GTZAN).
        kernel_sizes: the three odd filter lengths in taps.
        num_filters: filters per bank K (image rows).
        pool_bins: adaptive-pooling bins P (image columns).
        sample_rate: audio sample rate in Hz.
        spp: paper head (True) or the authors' released head (False).
        backbone_weights: None (random trunk), 'imagenet' (torchvision's IMAGENET1K_V1 weights;
            needs the network or torchvision's cache) or a path to a torchvision resnet18 state
            dict; ``fc`` keys are ignored.
        backend, precision: passed to every :class:`sincfb.FusedSincFilterbank`.
        clip_samples: samples per clip N (48,000 = 3 s at 16 kHz); the LayerNorm is sized for it.
        hidden, dropout: width and dropout of the SPP head's hidden layer (unused when spp=False).
        min_low_hz, min_band_hz: floors of the sinc cut-offs in Hz.
        trunk_width: the ResNet-18's conv1 channels (64: torchvision's; narrower: random trunk only).
    """

    def __init__(self, num_classes: int, kernel_sizes: Sequence[int] = (251, 501, 1001),
                 num_filters: int = 160, pool_bins: int = 1024, sample_rate: float = 16000,
                 spp: bool = True, backbone_weights: BackboneWeights = None,
                 backend: str = "auto", precision: Optional[str] = None,
                 clip_samples: int = 48000, hidden: int = 512, dropout: float = 0.5,
                 min_low_hz: float = 50, min_band_hz: float = 50,
                 trunk_width: int = IMAGENET_WIDTH):
        super().__init__()
        kernel_sizes = _check_front_end(num_classes, kernel_sizes, num_filters, pool_bins,
                                        sample_rate, clip_samples)
        check_image_size(num_filters, pool_bins, spp, "num_filters", "pool_bins")
        self.num_classes, self.num_filters = num_classes, num_filters
        self.kernel_sizes = kernel_sizes
        self.pool_bins, self.sample_rate, self.clip_samples = pool_bins, sample_rate, clip_samples
        self.spp = bool(spp)
        # Attribute names and shapes follow the authors' code (``nn.LayerNorm([1, 48000])``), so
        # their state dict loads with strict=True; older project checkpoints hold (N,) tensors.
        self.layerNorm = nn.LayerNorm([1, clip_samples])
        self.layerNorm.register_load_state_dict_pre_hook(_accept_flat_layer_norm)
        for i, length in enumerate(kernel_sizes, start=1):
            self.add_module(f"sincNet{i}", FusedSincFilterbank(
                num_filters, length, sample_rate, pool_bins, min_low_hz, min_band_hz,
                backend=backend, precision=precision))
        self.resnet = ResNetTrunk(num_classes, spp, hidden, dropout, trunk_width)
        self.resnet.load_backbone(backbone_weights)

    @property
    def banks(self) -> tuple[FusedSincFilterbank, ...]:
        """The filterbanks ``sincNet1``, ``sincNet2``, ``sincNet3``, in image-channel order."""
        return tuple(self._modules[f"sincNet{i}"] for i in range(1, 4))

    def parts(self) -> dict[str, list[nn.Module]]:
        """Front-end: the input LayerNorm and the three banks; then the trunk's parts."""
        return {"front-end": [self.layerNorm, *self.banks], **self.resnet.parts()}

    @property
    def feature_dim(self) -> int:
        """Length of :meth:`embed`'s output: 2560 with SPP, 512 without (at trunk width 64)."""
        return self.resnet.feature_dim

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, N) or (B, 1, N) -> the learned (B, 3, num_filters, pool_bins) image."""
        x = self.layerNorm(self.as_clips(x))
        # The fused op picks its operand precision itself (``precision``); autocast must not
        # recast the convolutions inside its kernels, so it is switched off around the banks.
        with torch.autocast(x.device.type, enabled=False):
            maps = [bank(x) for bank in self.banks]
        return torch.stack(maps, dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> the pooled conv5 feature the classifier reads: (B, 2560) with SPP (global
        average then 2x2 grid, before the hidden layer), (B, 512) without."""
        return self.resnet.pool(self.resnet.features(self.representation(x)))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features from :meth:`embed` -> logits (B, num_classes)."""
        return self.resnet.classify(features)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, kernel_sizes={self.kernel_sizes}, "
                f"num_filters={self.num_filters}, pool_bins={self.pool_bins}, "
                f"sample_rate={self.sample_rate}, clip_samples={self.clip_samples}, spp={self.spp}")


# the middle length, as the paper's single scale sits among its three
@register_model(lambda size, table: _sincresnet_sizes(table,
                                                    {"kernel_size": table["kernel_sizes"][1]}),
                summary=(("SincResNet (SPP head)", {"spp": True}),
                         ("SincResNet (global pool)", {"spp": False})), order=1)
class SincResNet(MSSincResNet):
    """Single-scale baseline of the paper's Table 1: MS-SincResNet with one filter length
    ``kernel_size`` for all three banks (they differ only through training). Other arguments as
    :class:`MSSincResNet`."""

    def __init__(self, num_classes: int, kernel_size: int = 251, num_filters: int = 160,
                 pool_bins: int = 1024, sample_rate: float = 16000, spp: bool = True,
                 backbone_weights: BackboneWeights = None, backend: str = "auto",
                 precision: Optional[str] = None, clip_samples: int = 48000, hidden: int = 512,
                 dropout: float = 0.5, min_low_hz: float = 50, min_band_hz: float = 50,
                 trunk_width: int = IMAGENET_WIDTH):
        check_positive_int("kernel_size", kernel_size, 3)
        super().__init__(num_classes, (kernel_size,) * 3, num_filters, pool_bins, sample_rate,
                         spp, backbone_weights, backend, precision, clip_samples, hidden, dropout,
                         min_low_hz, min_band_hz, trunk_width)
        self.kernel_size = kernel_size


def _accept_flat_layer_norm(module, state_dict, prefix, *_) -> None:
    """Load hook: view a (N,) LayerNorm weight or bias (project checkpoints written before the
    LayerNorm took the authors' (1, N) shape) as (1, N)."""
    for name in ("weight", "bias"):
        value = state_dict.get(prefix + name)
        if value is not None and tuple(value.shape) == tuple(module.normalized_shape[-1:]):
            state_dict[prefix + name] = value.view(module.normalized_shape)


def _check_front_end(num_classes, kernel_sizes, num_filters, pool_bins, sample_rate,
                     clip_samples) -> tuple[int, ...]:
    """Validate the sizes of the three-bank front-end; return ``kernel_sizes`` as a tuple."""
    check_positive_int("num_classes", num_classes)
    # Three banks, because the stacked image feeds ResNet-18's 3-channel conv1.
    kernel_sizes = check_int_tuple("kernel_sizes", kernel_sizes, length=3, minimum=3)
    check_odd_lengths("kernel_sizes", kernel_sizes)
    check_positive_int("num_filters", num_filters)
    check_positive_int("pool_bins", pool_bins)
    check_positive_int("clip_samples", clip_samples)
    check_sample_rate(sample_rate)
    longest = max(kernel_sizes)
    if longest > clip_samples:
        raise ValueError(f"kernel_sizes {kernel_sizes}: a {longest}-tap filter is longer than the "
                         f"clip of clip_samples={clip_samples} samples")
    positions = clip_samples - longest + 1
    if pool_bins > positions:
        raise ValueError(f"pool_bins={pool_bins} exceeds the {positions} output positions of the "
                         f"longest filter ({clip_samples} samples - {longest} taps + 1)")
    return kernel_sizes
