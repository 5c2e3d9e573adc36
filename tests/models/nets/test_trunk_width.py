"""A narrower ResNet-18 trunk (models.nets.trunk.resnet18's ``width``): torchvision's layout and keys,
the parameter count ResNet-18's formula gives (He et al. 2016, Table 1: 7x7 conv, four stages of
two 3x3 basic blocks, channels w, 2w, 4w, 8w, 1x1 projections where the shape changes), and
torchvision's network unchanged at 64."""
import pytest
import torch
import torchvision

from models.nets.catalog import build_model
from models.nets.trunk import ResNetTrunk, resnet18
from tests.models.helpers import resnet18_trunk_parameters, resnet18_width_parameters

SEED = 5


@pytest.mark.parametrize("width", [64, 32, 16])
def test_the_parameter_count_is_resnet18s_at_that_width(width):
    expected = resnet18_width_parameters(width) + 8 * width * 7 + 7          # trunk + fc
    assert sum(p.numel() for p in resnet18(7, width).parameters()) == expected


def test_the_formula_counts_torchvisions_own_network():
    assert resnet18_width_parameters(64) == resnet18_trunk_parameters()


def test_width_64_is_torchvisions_network_draw_for_draw():
    torch.manual_seed(SEED)
    ours = resnet18(5).state_dict()
    torch.manual_seed(SEED)
    theirs = torchvision.models.resnet18(num_classes=5).state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_a_narrow_trunk_keeps_the_keys_and_its_features_scale_with_the_width():
    narrow, full = resnet18(5, 16), torchvision.models.resnet18(num_classes=5)
    assert list(narrow.state_dict()) == list(full.state_dict())
    trunk = ResNetTrunk(5, spp=True, hidden=32, width=16)
    assert trunk.feature_dim == 5 * 8 * 16
    torch.manual_seed(SEED)
    image = torch.randn(2, 3, 40, 128)
    assert trunk.features(image).shape == (2, 128, 2, 4)
    assert trunk(image).shape == (2, 5)
    # He-normal convolutions (fan-out, gain sqrt(2)), as torchvision initialises its own
    weight = narrow.layer3[0].conv2.weight
    expected_std = (2.0 / (weight.shape[0] * 9)) ** 0.5
    assert weight.std().item() == pytest.approx(expected_std, rel=0.1)


def test_a_narrow_trunk_refuses_imagenet_weights_and_the_models_take_the_width():
    with pytest.raises(ValueError, match="width 64.*random"):
        ResNetTrunk(5, width=32).load_backbone("imagenet")
    for name, kwargs in (("mssincresnet", {"num_filters": 40, "kernel_sizes": (31, 63, 127),
                                           "pool_bins": 64, "clip_samples": 4000}),
                         ("sincresnet", {"num_filters": 40, "kernel_size": 63, "pool_bins": 64,
                                         "clip_samples": 4000}),
                         ("melresnet", {"n_mels": 40, "frames": 64, "clip_samples": 4000,
                                        "n_fft": 256})):
        model = build_model(name, 3, trunk_width=8, **kwargs)
        assert model.resnet.model.conv1.out_channels == 8, name
        assert model(torch.randn(2, 4000)).shape == (2, 3), name
