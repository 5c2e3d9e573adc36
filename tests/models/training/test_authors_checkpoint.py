"""The authors' released network and checkpoint files load into ``MSSincResNet(spp=False)``.

Their network is the stand-in of :mod:`tests.models.authors_release`, written from their models.py
(GitHub PeiChunChang/MS-SincResNet @ 95799db1d1866b83edf3d1873b3de34cef319e28, models.py) with
their module tree, key names and shapes (``nn.LayerNorm([1, 48000])``); their file format is what
their main.py saves and demo.py loads (a dict with ``state_dict``, ``epoch``, ``train_loss``,
``train_acc``, written to a ``.tar``). Nothing here is built from the models package's classes.
"""
import pytest
import torch
import torch.nn.functional as F

import models.training.authors
from models import MSSincResNet, compact_config
from models.data.readers.gtzan import GTZAN_GENRES
from models.base.datafiles import CheckpointError
from models.training.checkpoints import load_checkpoint
from tests.models.authors_release import RELEASED_SIZES, ReleasedMSSincResNet, released_checkpoint
from tests.models.helpers import randomise_batch_norms, relative_error
from tests.oracles import authors_bank, randomise_bank

CFG = compact_config("mssincresnet")
K, LENGTHS, P, N = CFG["num_filters"], CFG["kernel_sizes"], CFG["pool_bins"], CFG["clip_samples"]


def random_model(seed: int, **kwargs) -> MSSincResNet:
    """A compact float64 model with random cut-offs, BatchNorm and LayerNorm parameters."""
    generator = torch.Generator().manual_seed(seed)
    model = MSSincResNet(10, backend="reference", **{**CFG, **kwargs}).double()
    for bank in model.banks:
        randomise_bank(bank, generator)
    randomise_batch_norms(model, generator)
    return model


def random_release(seed: int, dtype=torch.float64, **sizes) -> ReleasedMSSincResNet:
    """The authors' network with random cut-offs, norms and statistics, in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    theirs = ReleasedMSSincResNet(**sizes).to(dtype)
    for bank in (theirs.sincNet1, theirs.sincNet2, theirs.sincNet3):
        randomise_bank(bank, generator)
    randomise_batch_norms(theirs, generator)
    return theirs.eval()


@pytest.fixture
def compact_release(monkeypatch):
    """Their architecture at the compact sizes: the filter lengths and pooling size are not in a
    state dict, so the loader's record of the release's values is replaced for the test."""
    monkeypatch.setattr(models.training.authors, "RELEASED_ARCHITECTURE",
                        {"kernel_sizes": LENGTHS, "pool_bins": P, "sample_rate": 16000})
    return dict(num_filters=K, kernel_sizes=LENGTHS, pool_bins=P, clip_samples=N)


@pytest.mark.parametrize("training", [True, False])
def test_front_end_equals_three_reference_banks_run_separately(training):
    model = random_model(0).train(training)
    theirs = [authors_bank(K, length, P).double().train(training) for length in LENGTHS]
    for ours, bank in zip(model.banks, theirs):
        bank.load_state_dict(ours.state_dict())
    x = torch.randn(3, 1, N, dtype=torch.float64)
    normed = F.layer_norm(x, (1, N), model.layerNorm.weight, model.layerNorm.bias)
    want = torch.stack([bank(normed) for bank in theirs], dim=1)
    got = model.representation(x)
    assert got.shape == (3, 3, K, P)
    assert relative_error(got, want) < 1e-10
    for ours, bank in zip(model.banks, theirs):      # running statistics moved the same way
        for key, value in bank.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-10, atol=0)


def test_their_state_dict_has_our_keys_and_shapes_at_release_size():
    theirs = ReleasedMSSincResNet()
    with torch.device("meta"):
        ours = MSSincResNet(10, spp=False)
    want = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == want and len(got) == 145
    assert got["layerNorm.weight"] == got["layerNorm.bias"] == (1, 48000)
    assert got["sincNet3.0.band_hz_"] == (160, 1) and got["resnet.model.fc.weight"] == (10, 512)


@pytest.mark.slow
def test_their_release_size_state_dict_loads_strict_and_gives_their_logits(tmp_path):
    """The real sizes (48,000-sample clips, 3 x 160 filters of 251/501/1001 taps, 1024 bins) in
    float64, through a file in their main.py format."""
    theirs = random_release(1)
    path = tmp_path / "checkpoint_41.tar"
    torch.save(released_checkpoint(theirs, epoch=41), path)
    state = torch.load(path, weights_only=True)["state_dict"]
    ours = MSSincResNet(10, spp=False).double()
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.randn(2, 1, RELEASED_SIZES["clip_samples"], dtype=torch.float64)
    with torch.no_grad():
        want, *feats = theirs(x)
        got = ours(x)
    assert feats[0].shape == (2, 1, 160, 1024)
    assert got.shape == (2, 10)
    assert relative_error(got, want) < 1e-12


@pytest.mark.parametrize("wrapped", [True, False])
def test_their_files_load_through_load_checkpoint(tmp_path, compact_release, wrapped):
    theirs = random_release(2, torch.float32, **compact_release)     # saved as they train: fp32
    path = tmp_path / "MS-SincResNet.tar"
    torch.save(released_checkpoint(theirs, epoch=3) if wrapped else theirs.state_dict(), path)
    model, record = load_checkpoint(path)
    model.double().eval(), theirs.double()
    x = torch.randn(3, 1, N, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(model(x), theirs(x)[0]) < 1e-10
    assert record["classes"] == list(GTZAN_GENRES) and record["class_order"] == "assumed"
    assert record["epoch"] == (3 if wrapped else None)
    config = record["config"]
    assert config["recipe"] == "authors" and config["spp"] is False
    assert config["clip_seconds"] == N / 16000 and config["fixed_seconds"] == 30.0
    assert config["frame_lookback_seconds"] == pytest.approx(2 / 3 * N / 16000)


def test_their_class_order_can_be_given_and_must_fit(tmp_path, compact_release):
    theirs = random_release(3, **compact_release)
    torch.save(released_checkpoint(theirs), tmp_path / "c.tar")
    names = [f"g{i}" for i in range(10)]
    _, record = load_checkpoint(tmp_path / "c.tar", class_names=names)
    assert record["classes"] == names and record["class_order"] == "given"
    with pytest.raises(CheckpointError, match="10 outputs, but 3 class names"):
        load_checkpoint(tmp_path / "c.tar", class_names=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="pass --classes"):
        load_checkpoint(tmp_path / "c.tar", classes=names)


def test_project_checkpoints_with_a_flat_layer_norm_still_load(tiny_run, tmp_path):
    """Checkpoints written before the LayerNorm took the authors' (1, N) shape hold (N,)."""
    state = torch.load(tiny_run / "best.pt", weights_only=True)
    weight = state["model_state"]["layerNorm.weight"].clone()
    assert weight.shape == (1, N)
    with torch.no_grad():
        weight.uniform_(0.5, 1.5)
    state["model_state"]["layerNorm.weight"] = weight.reshape(N)
    state["model_state"]["layerNorm.bias"] = state["model_state"]["layerNorm.bias"].reshape(N)
    torch.save(state, tmp_path / "old.pt")
    model, _ = load_checkpoint(tmp_path / "old.pt")
    torch.testing.assert_close(model.layerNorm.weight.detach(), weight, rtol=0, atol=0)
    wrong = {**state["model_state"], "layerNorm.bias": torch.zeros(N + 1)}
    with pytest.raises(RuntimeError, match="layerNorm.bias"):
        model.load_state_dict(wrong)
