"""Training-time behaviour: gradients reach every parameter, bf16 autocast, channels_last,
torch.compile and the 'auto' backend, all on the compact configuration."""
import pytest
import torch
import torch.nn.functional as F

from models import MODELS
from tests.models.helpers import compact_clips, compact_model, relative_error

NAMES = sorted(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model = compact_model(name).train()
    loss = F.cross_entropy(model(compact_clips(name)), torch.tensor([0, 5]))
    loss.backward()
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    zero = [n for n, p in params.items() if not p.grad.any()]
    assert len(zero) <= 0.05 * len(params), f"all-zero gradients: {zero}"
    # the learned front-end in particular: every sinc cut-off tensor moves
    for n in params:
        if n.endswith(("low_hz_", "band_hz_")):
            assert params[n].grad.any(), n


@pytest.mark.parametrize("name", ["mssincresnet", "melresnet", "sincnet"])
def test_bf16_autocast_forward_and_backward(name):
    model = compact_model(name).eval()
    x = compact_clips(name)
    reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x)
    assert low.dtype == torch.bfloat16
    assert relative_error(low, reference) < 5e-2
    if name != "mssincresnet":      # bf16 backward is slow on CPUs without bf16 units: one model
        return
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["mssincresnet", "melresnet"])
def test_channels_last_gives_the_same_logits(name):
    model = compact_model(name).eval()
    x = compact_clips(name)
    want = model(x)
    model.to(memory_format=torch.channels_last)
    assert model.resnet.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    fmap = model.resnet.features(model.representation(x))
    assert fmap.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model.classify(model.resnet.pool(fmap)), want, rtol=1e-4,
                               atol=1e-5)


def test_compile_fullgraph_training_step_matches_eager():
    """Dynamo captures the whole model (sinc custom op included) in one graph, forward and
    backward; aot_eager keeps it fast while exercising the op's fake and autograd registrations."""
    torch._dynamo.reset()
    model = compact_model("mssincresnet", dropout=0.0).train()
    x = compact_clips("mssincresnet")
    eager = model(x)
    eager.sum().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(x)
    got.sum().backward()
    assert relative_error(got, eager) < 1e-5
    for n, p in model.named_parameters():
        assert relative_error(p.grad, want[n]) < 1e-4, n


@pytest.mark.slow
def test_compile_inductor_forward_matches_eager():
    """The default inductor backend on the compact model's eval forward (about 25-40 s on two
    CPU cores, mostly compiling ResNet-18)."""
    torch._dynamo.reset()
    model = compact_model("mssincresnet").eval()
    x = compact_clips("mssincresnet")
    compiled = torch.compile(model)
    assert relative_error(compiled(x), model(x)) < 1e-5


def test_auto_backend_trains():
    """backend='auto' picks the fastest sincfb backend available here; the model trains on it."""
    model = compact_model("mssincresnet", backend="auto").train()
    logits = model(compact_clips("mssincresnet"))
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(bank.sinc.low_hz_.grad).all() for bank in model.banks)
