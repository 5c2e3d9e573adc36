"""The authors' released MS-SincResNet, re-implemented as the baseline of benchmarks W3 and W4.

Faithful to their module tree (DESIGN.md §1-2): ``layerNorm`` over the clip's samples
(``LayerNorm([1, N])``, as their models.py builds it), three banks
``sincNet1..3`` = ``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)`` (the sinc layer
computes its filters and runs ``F.conv1d``: exactly their ``SincConv_fast``), stacked into a
3-channel image for ``resnet.model``, a torchvision resnet18 with ``fc = Linear(512, classes)``.
Its state-dict keys are the authors', which are also those of ``models.MSSincResNet(spp=False)``,
so both load the same weights and the benchmark compares implementations, not networks.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torchvision
from torch import nn

import sincfb

__all__ = ["AuthorsMSSincResNet", "AuthorsResNet", "authors_bank"]


def authors_bank(filters: int, length: int, bins: int, sample_rate: float) -> nn.Sequential:
    """``Sequential(SincConv, BatchNorm1d, ReLU, AdaptiveAvgPool1d)``, the authors' bank."""
    return nn.Sequential(sincfb.SincConv(filters, length, sample_rate), nn.BatchNorm1d(filters),
                         nn.ReLU(), nn.AdaptiveAvgPool1d(bins))


class AuthorsResNet(nn.Module):
    """Holds torchvision's resnet18 as ``model`` (the authors' ``resnet.model.*`` keys)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.model = torchvision.models.resnet18()
        self.model.fc = nn.Linear(512, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, K, P) image -> (B, classes) logits."""
        return self.model(image)


class AuthorsMSSincResNet(nn.Module):
    """The authors' released network (global average pool and one linear layer, no SPP).

    ``channels_last=True`` hands the stacked image to the ResNet in channels-last layout (the
    tuned baseline; convert the parameters too with ``.to(memory_format=torch.channels_last)``).
    """

    def __init__(self, num_classes: int = 10, num_filters: int = 160,
                 kernel_sizes: Sequence[int] = (251, 501, 1001), pool_bins: int = 1024,
                 clip_samples: int = 48000, sample_rate: float = 16000,
                 channels_last: bool = False):
        super().__init__()
        self.layerNorm = nn.LayerNorm([1, clip_samples])      # their shape: weight (1, N)
        for i, length in enumerate(kernel_sizes, start=1):
            self.add_module(f"sincNet{i}", authors_bank(num_filters, length, pool_bins, sample_rate))
        self.resnet = AuthorsResNet(num_classes)
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) or (B, N) clips -> (B, classes) logits."""
        x = self.layerNorm(x if x.dim() == 3 else x[:, None])
        image = torch.stack([self.sincNet1(x), self.sincNet2(x), self.sincNet3(x)], dim=1)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.resnet(image)
