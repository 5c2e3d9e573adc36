"""Trunk weights from a local torchvision resnet18 file, from the weights API, and offline errors.

No test touches the network: the weights API's download function is replaced."""
from urllib.error import URLError

import pytest
import torch
import torchvision
import torchvision.models._api as weights_api

from models import BackboneWeightsUnavailable, MelResNet, MSSincResNet, compact_config

CFG = compact_config("mssincresnet")


def saved_resnet18(path, num_classes=1000):
    """A torchvision resnet18 with recognisable (non-default) weights, saved as a state dict."""
    torch.manual_seed(3)
    net = torchvision.models.resnet18(num_classes=num_classes)
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-1, 1)
    torch.save(net.state_dict(), path)
    return net.state_dict()


def assert_trunk_loaded(model, state):
    trunk = model.resnet.model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(trunk[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("spp", [True, False])
def test_local_file_loads_the_trunk_and_ignores_fc(tmp_path, spp):
    path = tmp_path / "resnet18.pth"
    state = saved_resnet18(path)                      # fc is Linear(512, 1000); ours has 7 classes
    model = MSSincResNet(7, backbone_weights=str(path), spp=spp, **CFG)
    assert_trunk_loaded(model, state)
    if not spp:
        assert model.resnet.model.fc.weight.shape == (7, 512)


def test_local_file_works_for_melresnet_and_wrapped_checkpoints(tmp_path):
    state = saved_resnet18(tmp_path / "plain.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pth")
    model = MelResNet(4, backbone_weights=tmp_path / "wrapped.pth",
                      **compact_config("melresnet"))
    assert_trunk_loaded(model, state)


def test_imagenet_through_the_weights_api(monkeypatch, tmp_path):
    state = saved_resnet18(tmp_path / "resnet18.pth")
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return torch.load(tmp_path / "resnet18.pth", weights_only=True)

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", fake_download)
    model = MSSincResNet(10, backbone_weights="imagenet", **CFG)
    assert urls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert_trunk_loaded(model, state)


def test_imagenet_offline_raises_a_clear_error(monkeypatch):
    def offline(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneWeightsUnavailable) as info:
        MSSincResNet(10, backbone_weights="imagenet", **CFG)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "backbone_weights='/path/to/" in message
    assert "offline" in message and "checkpoints" in message
    assert isinstance(info.value.__cause__, URLError)


def test_bad_weight_files_and_values(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MSSincResNet(10, backbone_weights=tmp_path / "missing.pth", **CFG)
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing keys"):
        MSSincResNet(10, backbone_weights=tmp_path / "partial.pth", **CFG)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="state dict"):
        MSSincResNet(10, backbone_weights=tmp_path / "list.pth", **CFG)
    with pytest.raises(TypeError, match="backbone_weights"):
        MSSincResNet(10, backbone_weights=3, **CFG)
