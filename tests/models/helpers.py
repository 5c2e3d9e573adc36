"""Shared pieces of the model tests: independent parameter-count formulas and small helpers.

The stand-in for the authors' released network is in :mod:`tests.models.authors_release`.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

from tests.tolerance import relative_error  # noqa: F401 (the models tests' comparison)


def resnet18_trunk_parameters() -> int:
    """Parameters of torchvision's resnet18 without its fc layer (an independently built one)."""
    with torch.device("meta"):
        net = torchvision.models.resnet18()
    return sum(p.numel() for name, p in net.named_parameters() if not name.startswith("fc."))


def resnet18_width_parameters(width: int) -> int:
    """ResNet-18's parameters without fc at conv1 width ``width``, from the architecture table
    (He et al. 2016, Table 1: 7x7 conv, four stages of two 3x3 basic blocks with w, 2w, 4w, 8w
    channels, a 1x1 projection where the shape changes; two BatchNorm parameters per channel)."""
    def block(cin, cout, project):
        count = 9 * cin * cout + 9 * cout * cout + 2 * 2 * cout
        return count + (cin * cout + 2 * cout if project else 0)
    total, cin = 3 * 49 * width + 2 * width, width
    for stage, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
        total += block(cin, cout, stage > 0) + block(cout, cout, False)
        cin = cout
    return total


def linear_parameters(fan_in: int, fan_out: int) -> int:
    """Weights and bias of a Linear layer."""
    return fan_in * fan_out + fan_out


def resnet_head_parameters(num_classes: int, spp: bool, hidden: int) -> int:
    """SPP head: 512 x (1 + 4) pooled values -> hidden -> classes; otherwise fc 512 -> classes."""
    if spp:
        return linear_parameters(512 * 5, hidden) + linear_parameters(hidden, num_classes)
    return linear_parameters(512, num_classes)


def mssincresnet_parameters(num_classes, num_filters, clip_samples, spp, hidden=512) -> int:
    """LayerNorm affine (2N) + per bank low_hz_, band_hz_, BN weight, bias (4K) + trunk + head."""
    return (2 * clip_samples + 3 * 4 * num_filters + resnet18_trunk_parameters()
            + resnet_head_parameters(num_classes, spp, hidden))


def melresnet_parameters(num_classes, clip_samples, spp, hidden=512) -> int:
    """LayerNorm affine (2N) + BatchNorm2d(1) affine (2) + trunk + head (mel filters are fixed)."""
    return (2 * clip_samples + 2 + resnet18_trunk_parameters()
            + resnet_head_parameters(num_classes, spp, hidden))


def sincnet_parameters(num_classes, clip_samples, filters, lengths, pools, fc) -> int:
    """Input LayerNorm + sinc cut-offs + conv weights and biases + per-stage LayerNorm affine over
    (channels, time) + Linear and BatchNorm1d of each fully-connected layer + classifier."""
    total = 2 * clip_samples + 2 * filters[0]
    t = clip_samples
    for i, (c, length, pool) in enumerate(zip(filters, lengths, pools)):
        if i:
            total += filters[i - 1] * c * length + c
        t = (t - length + 1) // pool
        total += 2 * c * t
    width = filters[-1] * t
    for size in fc:
        total += linear_parameters(width, size) + 2 * size
        width = size
    return total + linear_parameters(width, num_classes)


def randomise_batch_norms(module: nn.Module, generator: torch.Generator) -> None:
    """Random affine parameters and running statistics for every BatchNorm2d and LayerNorm, so
    eval-mode comparisons do not pass merely because the statistics are the defaults."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=generator))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))


def compact_model(name: str, num_classes: int = 6, backend: str = "reference", seed: int = 0,
                  **extra):
    """The compact configuration of ``name``; sinc-bank models on ``backend`` ('reference' by
    default: the tests here check the models, not the speed of sincfb's backends)."""
    from models import build_model, compact_config

    kwargs = {**compact_config(name), **extra}
    if name in ("mssincresnet", "sincresnet"):
        kwargs["backend"] = backend
    torch.manual_seed(seed)
    return build_model(name, num_classes, **kwargs)


def compact_clips(name: str, batch: int = 2) -> torch.Tensor:
    """A batch of random clips of the compact configuration's length."""
    from models import compact_config

    return torch.randn(batch, compact_config(name)["clip_samples"])
