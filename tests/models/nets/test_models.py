"""Shapes, parameter counts, the registry and the trunk's size arithmetic of every model."""
import pytest
import torch

from models import (COMPACT, MODELS, MelResNet, MSSincResNet, SincNet, SincResNet, build_model,
                    compact_config, count_parameters, trunk_output_size)
from models.nets.catalog import LAPTOP
from models.nets.summary import markdown_table, parameter_counts, summary_rows
from tests.models.helpers import (compact_model, melresnet_parameters, mssincresnet_parameters,
                                  resnet18_trunk_parameters, resnet18_width_parameters,
                                  sincnet_parameters)

NAMES = sorted(MODELS)


def compact(name, num_classes=5, **extra):
    return compact_model(name, num_classes, **extra)


def expected_parameters(model, num_classes) -> int:
    """The count an independent formula predicts for ``model``'s configuration."""
    if isinstance(model, MSSincResNet):
        hidden = model.resnet.head[0].out_features if model.spp else 0
        return mssincresnet_parameters(num_classes, model.num_filters, model.clip_samples,
                                       model.spp, hidden)
    if isinstance(model, MelResNet):
        hidden = model.resnet.head[0].out_features if model.spp else 0
        return melresnet_parameters(num_classes, model.clip_samples, model.spp, hidden)
    return None


@pytest.mark.parametrize("name, spp", [("mssincresnet", True), ("mssincresnet", False),
                                       ("sincresnet", True), ("melresnet", True),
                                       ("melresnet", False)])
def test_resnet_models_shapes_and_parameter_counts(name, spp):
    model = compact(name, spp=spp).eval()
    n, k, p = COMPACT["clip_samples"], COMPACT["num_filters"], COMPACT["pool_bins"]
    x = torch.randn(2, 1, n)
    logits = model(x[:, 0])                            # (B, N) is accepted too
    assert logits.shape == (2, 5)
    assert model.representation(x).shape == (2, 3, k, p)
    features = model.embed(x)
    assert features.shape == (2, 2560 if spp else 512) == (2, model.feature_dim)
    torch.testing.assert_close(model.classify(features), logits)
    assert count_parameters(model) == expected_parameters(model, 5)


def test_sincnet_shapes_and_parameter_count():
    cfg = compact_config("sincnet")
    model = SincNet(7, **cfg).eval()
    x = torch.randn(2, 1, cfg["clip_samples"])
    t0 = (cfg["clip_samples"] - cfg["cnn_len_filt"][0] + 1) // cfg["cnn_max_pool_len"][0]
    logits = model(x)
    assert logits.shape == (2, 7)
    assert model.representation(x).shape == (2, cfg["cnn_n_filt"][0], t0)
    features = model.embed(x)
    assert features.shape == (2, cfg["fc_lay"][-1])
    torch.testing.assert_close(model.classify(features), logits)
    assert count_parameters(model) == sincnet_parameters(
        7, cfg["clip_samples"], cfg["cnn_n_filt"], cfg["cnn_len_filt"], cfg["cnn_max_pool_len"],
        cfg["fc_lay"])


@pytest.mark.parametrize("spp", [True, False])
def test_paper_configuration_counts_and_trunk_shapes(spp):
    """Paper sizes, built on the meta device (no memory, no forward through the sinc banks)."""
    with torch.device("meta"):
        ms = MSSincResNet(10, spp=spp)
        single = SincResNet(10, spp=spp)
    assert ms.kernel_sizes == (251, 501, 1001) and single.kernel_sizes == (251, 251, 251)
    assert count_parameters(ms) == count_parameters(single) == mssincresnet_parameters(
        10, 160, 48000, spp)
    image = torch.empty(2, 3, 160, 1024, device="meta")
    fmap = ms.resnet.features(image)
    assert fmap.shape == (2, 512, 5, 32)             # DESIGN.md §1: the 512x5x32 conv5 output
    assert ms.resnet.pool(fmap).shape == (2, 2560 if spp else 512)
    assert ms.resnet(image).shape == (2, 10)


def test_paper_melresnet_image_size_and_count():
    model = MelResNet(10)
    assert model.hop_length == 46 and model.frames == 1024 and model.n_mels == 160
    assert count_parameters(model) == melresnet_parameters(10, 48000, True)
    # 160 x 1024 like the sinc image, the central frames of the centred STFT
    clip = torch.randn(1, 48000)
    assert model.log_mel(clip).shape == (1, 1, 160, 1024)


def test_paper_sincnet_count():
    with torch.device("meta"):
        model = SincNet(10)
    assert count_parameters(model) == sincnet_parameters(10, 48000, (80, 60, 60), (251, 5, 5),
                                                         (3, 3, 3), (2048, 2048, 2048))


@pytest.mark.parametrize("size", [(1, 1), (32, 32), (33, 64), (40, 64), (160, 1024), (161, 999)])
def test_trunk_output_size_matches_resnet18(size):
    with torch.device("meta"):
        model = MSSincResNet(3, spp=False)
    fmap = model.resnet.features(torch.empty(2, 3, *size, device="meta"))
    assert tuple(fmap.shape[-2:]) == trunk_output_size(*size)


def test_spp_pools_global_then_two_by_two():
    model = compact("mssincresnet")
    fmap = torch.randn(2, 512, 2, 3)
    pooled = model.resnet.pool(fmap)
    torch.testing.assert_close(pooled[:, :512], fmap.mean(dim=(2, 3)))
    grid = pooled[:, 512:].view(2, 512, 2, 2)
    torch.testing.assert_close(grid[..., 0, 0], fmap[..., 0, :2].mean(-1))   # overlapping columns
    torch.testing.assert_close(grid[..., 1, 1], fmap[..., 1, 1:].mean(-1))


def test_registry_and_factory():
    assert set(MODELS) == {"mssincresnet", "sincnet", "sincresnet", "melresnet"}
    assert isinstance(build_model("MS-SincResNet", 4, **compact_config("ms_sincresnet")),
                      MSSincResNet)
    for name in NAMES:
        model = build_model(name, 3, **compact_config(name))
        assert isinstance(model, MODELS[name]) and model.clip_samples == COMPACT["clip_samples"]
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet50", 10)


def test_summary_table_covers_every_model_and_agrees_with_counts():
    rows = summary_rows(10)
    assert {r["config"] for r in rows} == {"paper", "laptop", "compact"}
    trunk = resnet18_trunk_parameters()
    for row in rows:
        assert row["front-end"] + row["trunk"] + row["head"] == row["total"]
        if "ResNet" in row["model"]:
            width = LAPTOP["trunk_width"] if row["config"] == "laptop" else 64
            assert row["trunk"] == (trunk if width == 64 else resnet18_width_parameters(width))
    paper_ms = next(r for r in rows if r["config"] == "paper" and r["model"].startswith("MS-Sinc"))
    assert paper_ms["total"] == mssincresnet_parameters(10, 160, 48000, True)
    assert markdown_table(rows).count("\n") == len(rows) + 2
    assert parameter_counts(compact("mssincresnet", spp=False))["head"] == 512 * 5 + 5


def test_parameter_counts_refuse_parts_that_miss_or_repeat_a_parameter(monkeypatch):
    model = compact("mssincresnet", spp=False)
    declared = model.parts()
    counts = parameter_counts(model)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert counts["front-end"] == sum(p.numel() for b in model.banks for p in b.parameters()) + \
        sum(p.numel() for p in model.layerNorm.parameters())
    monkeypatch.setattr(model, "parts", lambda: {**declared, "head": []})
    with pytest.raises(ValueError, match="leaves out.*fc"):
        parameter_counts(model)
    monkeypatch.setattr(model, "parts", lambda: {**declared, "head": [model.resnet.model.fc,
                                                                       model.resnet.model.layer4]})
    with pytest.raises(ValueError, match="both 'trunk' and 'head'"):
        parameter_counts(model)
