"""The front-end equals three reference banks; the authors' state dict loads, gives their logits."""
import pytest
import torch
import torch.nn.functional as F

from models import MSSincResNet, compact_config
from tests.models.helpers import AuthorsMSSincResNet, randomise_batch_norms, relative_error
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


@pytest.mark.parametrize("training", [True, False])
def test_front_end_equals_three_reference_banks_run_separately(training):
    model = random_model(0).train(training)
    theirs = [authors_bank(K, length, P).double().train(training) for length in LENGTHS]
    for ours, bank in zip(model.banks, theirs):
        bank.load_state_dict(ours.state_dict())
    x = torch.randn(3, 1, N, dtype=torch.float64)
    normed = F.layer_norm(x, (N,), model.layerNorm.weight, model.layerNorm.bias)
    want = torch.stack([bank(normed) for bank in theirs], dim=1)
    got = model.representation(x)
    assert got.shape == (3, 3, K, P)
    assert relative_error(got, want) < 1e-10
    for ours, bank in zip(model.banks, theirs):      # running statistics moved the same way
        for key, value in bank.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-10, atol=0)


def test_authors_state_dict_has_our_keys_at_paper_size():
    theirs = AuthorsMSSincResNet()                      # the paper's sizes, 10 classes
    with torch.device("meta"):
        ours = MSSincResNet(10, spp=False)
    want = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == want
    assert "layerNorm.weight" in got and "sincNet3.0.band_hz_" in got
    assert got["resnet.model.fc.weight"] == (10, 512)


def test_authors_checkpoint_loads_strict_and_reproduces_their_logits(tmp_path):
    generator = torch.Generator().manual_seed(1)
    theirs = AuthorsMSSincResNet(K, LENGTHS, P, N).double()
    for bank in (theirs.sincNet1, theirs.sincNet2, theirs.sincNet3):
        randomise_bank(bank, generator)
    randomise_batch_norms(theirs, generator)
    # through a file, as a released checkpoint would arrive
    torch.save(theirs.state_dict(), tmp_path / "authors.pth")
    state = torch.load(tmp_path / "authors.pth", weights_only=True)
    ours = MSSincResNet(10, spp=False, backend="reference", **CFG).double()
    ours.load_state_dict(state, strict=True)
    theirs.eval(), ours.eval()        # a loaded checkpoint classifies with running statistics
    x = torch.randn(2, 1, N, dtype=torch.float64)
    want = theirs(x)
    got = ours(x)
    assert got.shape == (2, 10)
    assert relative_error(got, want) < 1e-10
