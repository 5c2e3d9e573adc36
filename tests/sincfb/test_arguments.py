"""The op's arguments are declared once (sincfb/arguments.py): the registered schemas, the fake,
the autograd context and FilterbankConfig all follow the declaration, and a new argument added
to it reaches each of them."""
import dataclasses

import pytest
import torch

from sincfb import FusedSincFilterbank
from sincfb.arguments import (OP_ARGS, OP_RETURNS, Arg, FilterbankConfig, OpInputs, backward_args,
                              backward_schema, config_type, forwarded, inputs_type, schema)
from sincfb.backends import get_backend, register_backend
from tests.oracles import randomise_bank

# the text the op had before the declaration (saved graphs, exported programs and opcheck's
# expectations depend on it): the declaration must keep deriving exactly this
FILTERBANK_SCHEMA = (
    "sincfb::filterbank(Tensor x, Tensor low_hz_, Tensor band_hz_, Tensor? weight, Tensor? bias, "
    "Tensor? running_mean, Tensor? running_var, SymInt kernel_size, float sample_rate, "
    "float min_low_hz, float min_band_hz, SymInt pool_bins, bool training, float eps, "
    "str backend, str precision, bool keep_saved=True) -> (Tensor, Tensor, Tensor, Tensor, Tensor)")

GAIN = Arg("gain", "float", "a stand-in for a new argument", default=1.5, config=True)


def test_registered_schemas_are_the_declared_ones():
    assert str(torch.ops.sincfb.filterbank.default._schema) == FILTERBANK_SCHEMA
    assert str(torch.ops.sincfb.filterbank.default._schema) == "sincfb::filterbank" + schema()
    registered = torch.ops.sincfb.filterbank_backward.default._schema
    assert str(registered) == "sincfb::filterbank_backward" + backward_schema()
    assert [a.name for a in registered.arguments] == [a.name for a in backward_args()]
    assert len(registered.returns) == len(torch.ops.sincfb.filterbank.default._schema.returns) \
        == len(OP_RETURNS)


def test_config_and_named_inputs_follow_the_declaration():
    assert FilterbankConfig._fields == tuple(a.name for a in OP_ARGS if a.config)
    assert OpInputs._fields == tuple(a.name for a in OP_ARGS)
    named = OpInputs(*range(len(OP_ARGS) - 1))        # the dispatcher drops a trailing default
    assert named.keep_saved is True and named.precision == len(OP_ARGS) - 2


def test_a_new_argument_reaches_every_derived_place():
    """A copy of the declaration with one more argument: both schemas (as torch parses them),
    the named inputs with its default, and FilterbankConfig all carry it."""
    extended = OP_ARGS + (GAIN,)
    for text in (schema(extended), backward_schema(extended)):
        parsed = torch._C.parse_schema("sincfb::probe" + text)
        gain = next(a for a in parsed.arguments if a.name == "gain")
        assert str(gain.type) == "float" and gain.default_value == 1.5
    assert [a.name for a in forwarded(extended)][-1] == "gain"
    config = config_type(extended)
    assert config._fields[-1] == "gain"
    assert config(*range(len(config._fields) - 2)).gain == 1.5
    assert inputs_type("Probe", extended)(*range(len(OP_ARGS) - 1)).gain == 1.5
    not_last = OP_ARGS + (Arg("late", "float", "no default after defaults"),)
    with pytest.raises(ValueError, match="must come last"):
        inputs_type("Probe", not_last)


def _inputs(device, **overrides):
    gen = torch.Generator().manual_seed(3)
    layer = randomise_bank(FusedSincFilterbank(5, 21, pool_bins=7), gen).to(device)
    bn = layer.batch_norm
    x = torch.randn(2, 1, 120, generator=gen).to(device)
    values = dict(x=x, low_hz_=layer.sinc.low_hz_.detach(), band_hz_=layer.sinc.band_hz_.detach(),
                  weight=bn.weight.detach(), bias=bn.bias.detach(), running_mean=bn.running_mean,
                  running_var=bn.running_var, kernel_size=21, sample_rate=16000.0,
                  min_low_hz=50.0, min_band_hz=50.0, pool_bins=7, training=True, eps=1e-5,
                  backend="reference", precision="ieee")
    return tuple(OpInputs(**{**values, **overrides}))


@pytest.mark.parametrize("keep_saved", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_the_fake_gives_the_real_shapes_and_dtypes(keep_saved, affine):
    """The fake (meta tensors) unpacks the inputs by the same names as the implementation."""
    none = {} if affine else {"weight": None, "bias": None}
    real = torch.ops.sincfb.filterbank(*_inputs("cpu", keep_saved=keep_saved, **none))
    fake = torch.ops.sincfb.filterbank(*_inputs("meta", keep_saved=keep_saved, **none))
    assert [(t.shape, t.dtype) for t in fake] == [(t.shape, t.dtype) for t in real]
    assert all(t.device.type == "meta" for t in fake)


def test_the_backward_gets_the_forward_configuration():
    """The autograd context keeps the declared arguments by name: the backend's backward sees
    the forward's FilterbankConfig (keep_saved aside: the backward op has none)."""
    seen = {}
    original = get_backend("reference")

    def forward(*args):
        seen["forward"] = args[-1]
        return original.forward(*args)

    def backward(*args, **kwargs):
        seen["backward"] = args[-1]
        return original.backward(*args, **kwargs)

    register_backend(dataclasses.replace(original, forward=forward, backward=backward))
    try:
        inputs = _inputs("cpu", training=False, sample_rate=22050.0, min_low_hz=30.0, eps=1e-3)
        x = inputs[0].requires_grad_()
        torch.ops.sincfb.filterbank(x, *inputs[1:])[0].sum().backward()
    finally:
        register_backend(original)
    assert seen["forward"] == FilterbankConfig(21, 22050.0, 30.0, 50.0, 7, False, 1e-3, "ieee")
    assert seen["backward"] == seen["forward"]
    assert x.grad is not None and torch.isfinite(x.grad).all()
