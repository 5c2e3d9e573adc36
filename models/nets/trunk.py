"""The image trunk shared by the ResNet models: torchvision's ResNet-18, its heads and its weights.

The trunk lives in ``ResNetTrunk.model``, a plain ``torchvision.models.resnet18``, so that a model
holding the trunk as ``resnet`` has the authors' state-dict keys ``resnet.model.<resnet18 keys>``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .common import check_positive_int, check_probability

__all__ = ["ResNetTrunk", "trunk_output_size", "check_image_size", "load_backbone_state_dict",
           "BackboneWeightsUnavailable", "IMAGENET_WEIGHTS", "TRUNK_CHANNELS", "SPP_LEVELS",
           "IMAGENET_WIDTH", "resnet18", "trunk_sizes"]

TRUNK_CHANNELS = 512            # channels of ResNet-18's conv5 (layer4) output
IMAGENET_WIDTH = 64             # ResNet-18's conv1 channels; its stages have 1, 2, 4, 8 times this
SPP_LEVELS = (1, 2)             # the paper's pyramid: one global average and a 2x2 grid of averages
IMAGENET_WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1

BackboneWeights = Union[None, str, os.PathLike]


class BackboneWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be downloaded (typically: no network)."""


def trunk_output_size(height: int, width: int) -> tuple[int, int]:
    """Size of ResNet-18's conv5 map for a ``height`` x ``width`` input image.

    Five layers halve the image: conv1 (7x7, stride 2, padding 3), the max-pool (3x3, stride 2,
    padding 1) and the first convolutions of layer2..layer4 (3x3, stride 2, padding 1). Each maps
    a side s to floor((s - 1) / 2) + 1 = ceil(s / 2); the paper's 160x1024 image gives 5x32.
    """
    for _ in range(5):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    return height, width


def check_image_size(height: int, width: int, spp: bool, rows: str = "rows",
                     columns: str = "columns") -> None:
    """Raise if spatial pyramid pooling cannot take the conv5 map of a ``height`` x ``width`` image.

    A 2x2 grid of block averages needs at least two rows and two columns in the conv5 map, that is
    at least 33 image rows and columns; ``rows``/``columns`` name the arguments that set them.
    """
    h, w = trunk_output_size(height, width)
    top = max(SPP_LEVELS)
    if spp and (h < top or w < top):
        raise ValueError(
            f"spatial pyramid pooling needs a conv5 map of at least {top}x{top}, but the "
            f"{height}x{width} image ({rows} x {columns}) gives {h}x{w} (ResNet-18 divides each "
            f"side by 32, rounding up): use at least {32 * (top - 1) + 1} {rows} and "
            f"{32 * (top - 1) + 1} {columns}, or spp=False")


def _fetch_imagenet_state_dict() -> dict:
    """torchvision's ImageNet weights of ResNet-18 (from its cache, or downloaded)."""
    try:
        return IMAGENET_WEIGHTS.get_state_dict(progress=False)
    except OSError as err:      # URLError, socket and SSL errors are all OSErrors
        filename = IMAGENET_WEIGHTS.url.rsplit("/", 1)[-1]
        raise BackboneWeightsUnavailable(
            f"could not download ResNet-18's ImageNet weights from {IMAGENET_WEIGHTS.url} ({err}); "
            "this machine may be offline. Download that file where the network is reachable, then "
            f"either pass backbone_weights='/path/to/{filename}' or copy it to "
            f"{Path(torch.hub.get_dir()) / 'checkpoints' / filename}, where torchvision looks "
            "before downloading. backbone_weights=None trains the trunk from a random "
            f"initialisation. On the command line: --backbone /path/to/{filename}, or "
            "--backbone random.") from err


def _read_state_dict_file(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone_weights file {str(path)!r} does not exist; pass None, "
                                "'imagenet' or the path of a saved torchvision resnet18 state dict "
                                "(on the command line: --backbone random, imagenet or a .pth path)")
    from ..base.datafiles import load_data_file

    state = load_data_file(path)        # data only: a file that would run code is refused
    # Training scripts often wrap the state dict; accept the common {'state_dict': ...} layout.
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict (a mapping of names to "
                         "tensors) of torchvision's resnet18")
    return state


def load_backbone_state_dict(weights: BackboneWeights) -> Optional[Mapping[str, torch.Tensor]]:
    """Resolve ``backbone_weights``: None -> None, 'imagenet' -> torchvision's ImageNet weights,
    a path -> the torchvision resnet18 state dict saved there."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return _fetch_imagenet_state_dict()
    if isinstance(weights, (str, os.PathLike)):
        return _read_state_dict_file(Path(weights))
    raise TypeError("backbone_weights must be None, 'imagenet' or a path to a torchvision resnet18 "
                    f"state dict, got {type(weights).__name__}")


def _stage(inplanes: int, planes: int, stride: int) -> nn.Sequential:
    """Two of torchvision's basic blocks, the first with a strided 1x1 projection where the
    shape changes: the structure (and state-dict keys) of a ResNet-18 ``layerN``."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes))
    block = torchvision.models.resnet.BasicBlock
    return nn.Sequential(block(inplanes, planes, stride, downsample), block(planes, planes))


def resnet18(num_classes: int, width: int = IMAGENET_WIDTH) -> torchvision.models.ResNet:
    """torchvision's ResNet-18 with ``width`` channels after conv1 (stages of 1, 2, 4, 8 x width).

    ``width=64`` is torchvision's own network; a narrower one keeps its layout and keys, and its
    initialisation (He-normal convolutions, BatchNorm at 1 and 0), with a quarter of the
    parameters and compute at half the width: what a random trunk on a few hundred songs can fit.
    """
    check_positive_int("trunk_width", width)
    model = torchvision.models.resnet18(num_classes=num_classes)
    if width == IMAGENET_WIDTH:
        return model
    model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    widths = (width, 2 * width, 4 * width, 8 * width)
    for index, (inplanes, planes) in enumerate(zip((width,) + widths[:-1], widths), start=1):
        setattr(model, f"layer{index}", _stage(inplanes, planes, 1 if index == 1 else 2))
    model.fc = nn.Linear(widths[-1], num_classes)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def trunk_sizes(table: Mapping) -> dict:
    """The trunk's constructor arguments a size table sets (``trunk_width`` where it has one)."""
    return {"trunk_width": table["trunk_width"]} if "trunk_width" in table else {}


class ResNetTrunk(nn.Module):
    """torchvision ResNet-18 on a 3-channel image, then a classifier head.

    ``spp=False`` (the authors' released variant): ResNet-18's global average pool and its ``fc``,
    a ``Linear(512, num_classes)``. ``spp=True`` (the paper): spatial pyramid pooling of the conv5
    map (one global average and a 2x2 grid of block averages, 5 x 512 = 2560 values) and ``head``,
    ``Linear(2560, hidden) -> ReLU -> Dropout -> Linear(hidden, num_classes)``; ``model.fc`` is then
    an ``Identity`` so no unused parameters remain. ``width`` narrows the trunk (:func:`resnet18`;
    the pooled feature has ``8 * width`` channels per cell instead of 512).
    """

    def __init__(self, num_classes: int, spp: bool = True, hidden: int = 512,
                 dropout: float = 0.5, width: int = IMAGENET_WIDTH):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        self.spp = bool(spp)
        self.width = width
        self.model = resnet18(num_classes, width)
        if self.spp:
            check_positive_int("hidden", hidden)
            check_probability("dropout", dropout)
            self.model.fc = nn.Identity()
            self.head = nn.Sequential(nn.Linear(self.feature_dim, hidden), nn.ReLU(inplace=True),
                                      nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def parts(self) -> dict[str, list[nn.Module]]:
        """``trunk`` (conv1 .. layer4) and ``head`` (the SPP head, or ResNet-18's ``fc``)."""
        m = self.model
        return {"trunk": [m.conv1, m.bn1, m.layer1, m.layer2, m.layer3, m.layer4],
                "head": [self.head if self.spp else m.fc]}

    @property
    def feature_dim(self) -> int:
        """Length of the pooled feature: 2560 with spatial pyramid pooling, 512 without."""
        cells = sum(level * level for level in SPP_LEVELS) if self.spp else 1
        return cells * TRUNK_CHANNELS * self.width // IMAGENET_WIDTH

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> (B, 512, ceil(H/32), ceil(W/32)) conv5 map."""
        m = self.model
        if m.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            # The model was converted with .to(memory_format=channels_last): feed it that layout so
            # the convolutions do not convert back and forth.
            image = image.contiguous(memory_format=torch.channels_last)
        x = m.maxpool(m.relu(m.bn1(m.conv1(image))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """conv5 map -> pooled feature (B, feature_dim); with SPP the 512 global averages come
        first, then the 2x2 grid flattened channel by channel (c0's four cells, c1's, ...)."""
        if not self.spp:
            return torch.flatten(self.model.avgpool(fmap), 1)
        # Adaptive pooling: when a side is odd (5 rows in the paper) the two blocks share a row.
        levels = [F.adaptive_avg_pool2d(fmap, level).flatten(1) for level in SPP_LEVELS]
        return torch.cat(levels, dim=1)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled feature -> logits."""
        return self.head(pooled) if self.spp else self.model.fc(pooled)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> logits (B, num_classes)."""
        return self.classify(self.pool(self.features(image)))

    def load_backbone(self, weights: BackboneWeights) -> None:
        """Load trunk weights (conv1..layer4, every key but ``fc.*``) from ``weights``: None (keep
        the random initialisation), 'imagenet' or a path to a torchvision resnet18 state dict."""
        if weights is not None and self.width != IMAGENET_WIDTH:
            raise ValueError(f"backbone weights are for ResNet-18's own width {IMAGENET_WIDTH}; "
                             f"a trunk of width {self.width} starts from random weights "
                             "(--backbone random)")
        state = load_backbone_state_dict(weights)
        if state is None:
            return
        trunk_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.model.load_state_dict(trunk_state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError("backbone_weights is not a torchvision resnet18 state dict: "
                             f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                             f"unexpected keys {unexpected[:5]}"
                             f"{'...' if len(unexpected) > 5 else ''}")
