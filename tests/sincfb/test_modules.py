"""SincConv and FusedSincFilterbank as drop-ins: outputs, state dicts, conversions, bad input."""
import pytest
import torch
import torch.nn.functional as F

from sincfb import FusedSincFilterbank, SincConv
from tests.oracles import AuthorsSincConv, authors_bank, randomise_bank
from tests.tolerance import relative_error, tolerance

SEQUENTIAL_KEYS = {"0.low_hz_", "0.band_hz_", "1.weight", "1.bias", "1.running_mean",
                   "1.running_var", "1.num_batches_tracked"}


@pytest.mark.parametrize("kernel_size", [251, 10])
def test_sincconv_matches_authors_layer(kernel_size):
    ours, theirs = SincConv(12, kernel_size), AuthorsSincConv(12, kernel_size)
    assert ours.kernel_size == theirs.kernel_size == kernel_size + (kernel_size % 2 == 0)
    torch.testing.assert_close(ours.low_hz_, theirs.low_hz_, rtol=0, atol=0)
    torch.testing.assert_close(ours.band_hz_, theirs.band_hz_, rtol=0, atol=0)
    ours.double(), theirs.double()
    x = torch.randn(3, 1, 700, dtype=torch.float64)
    assert relative_error(ours(x), theirs(x)) <= tolerance(same_terms=True)
    assert set(ours.state_dict()) == {"low_hz_", "band_hz_"}


def test_sincconv_stride_dilation_and_int_padding_follow_conv1d():
    layer = SincConv(4, 21, stride=3, dilation=2, padding=5).double()
    x = torch.randn(2, 1, 300, dtype=torch.float64)
    want = F.conv1d(x, layer.filters().unsqueeze(1), stride=3, padding=5, dilation=2)
    torch.testing.assert_close(layer(x), want)


def test_sincconv_same_and_causal_padding():
    x = torch.randn(1, 1, 200, dtype=torch.float64)
    same, causal = SincConv(3, 31, padding="same").double(), SincConv(3, 31, padding="causal").double()
    assert same(x).shape[-1] == 200 and causal(x).shape[-1] == 200
    # 'same' centres the filter: it equals a valid convolution of the symmetrically padded input
    torch.testing.assert_close(same(x), F.conv1d(F.pad(x, (15, 15)), same.filters().unsqueeze(1)))
    # 'causal': changing the future leaves the past untouched
    future = x.clone()
    future[..., 120:] += 1.0
    torch.testing.assert_close(causal(x)[..., :120], causal(future)[..., :120], rtol=0, atol=0)
    assert not torch.allclose(causal(x)[..., 120:], causal(future)[..., 120:])


def test_fused_state_dict_has_sequential_keys_and_round_trips():
    theirs = randomise_bank(authors_bank(9, 51, 20))
    fused = FusedSincFilterbank(9, 51, pool_bins=20)
    assert set(fused.state_dict()) == SEQUENTIAL_KEYS
    fused.load_state_dict(theirs.state_dict())
    back = authors_bank(9, 51, 20)
    back.load_state_dict(fused.state_dict())
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0)


def test_from_and_to_sequential_compute_the_same():
    theirs = randomise_bank(authors_bank(7, 33, 12)).double()
    fused = FusedSincFilterbank.from_sequential(theirs, backend="reference")
    assert fused.pool_bins == 12 and fused.kernel_size == 33
    assert fused.sinc.low_hz_.dtype == torch.float64
    x = torch.randn(2, 1, 300, dtype=torch.float64)
    assert relative_error(fused(x), theirs(x)) <= tolerance(torch.float64)
    seq = fused.to_sequential()
    fused.eval(), seq.eval(), theirs.eval()
    assert relative_error(seq(x), theirs(x)) <= tolerance(torch.float64)
    assert relative_error(fused(x), theirs(x)) <= tolerance(torch.float64)
    with pytest.raises(TypeError, match="Sequential"):
        FusedSincFilterbank.from_sequential(torch.nn.Sequential(theirs[0], theirs[1]))


def test_from_sequential_keeps_float64_exactly():
    """A float64 Sequential converts without a float32 detour: the cut-offs and statistics are
    copied bit for bit and the outputs agree to 1e-12, both ways round."""
    theirs = randomise_bank(authors_bank(11, 65, 16)).double()
    with torch.no_grad():       # cut-offs with more digits than float32 holds
        theirs[0].low_hz_.add_(torch.rand(11, 1, dtype=torch.float64) * 1e-3)
        theirs[0].band_hz_.add_(torch.rand(11, 1, dtype=torch.float64) * 1e-3)
    fused = FusedSincFilterbank.from_sequential(theirs, backend="reference")
    for key, value in theirs.state_dict().items():
        got = fused.state_dict()[key]
        assert got.dtype == value.dtype and got.device == value.device, key
        torch.testing.assert_close(got, value, rtol=0, atol=0)
    x = torch.randn(3, 1, 400, dtype=torch.float64)
    for training in (False, True):
        fused.train(training), theirs.train(training)
        assert relative_error(fused(x), theirs(x)) <= tolerance(same_terms=True)
    back = fused.to_sequential()       # (the training pass moved both running statistics)
    back.eval(), theirs.eval()
    for key, value in fused.state_dict().items():
        assert back.state_dict()[key].dtype == value.dtype
        torch.testing.assert_close(back.state_dict()[key], value, rtol=0, atol=0)
    assert relative_error(back(x), theirs(x)) <= tolerance(same_terms=True)


def test_repr_shows_backend_choice():
    layer = FusedSincFilterbank(4, 11, pool_bins=4)
    layer(torch.randn(2, 1, 50))
    text = repr(layer)
    assert "backend='auto'" in text and f"last ran: '{layer.resolved_backend('cpu')}'" in text


BAD_INPUTS = [
    (torch.randn(2, 100), ValueError, "shape"),                       # missing channel dim
    (torch.randn(2, 2, 100), ValueError, "one channel"),              # two channels
    (torch.randn(2, 1, 10), ValueError, "fewer than the filter"),     # N < L
    (torch.randn(2, 1, 30), ValueError, "pool_bins"),                 # P > N_out
    (torch.randint(0, 5, (2, 1, 100)), TypeError, "floating"),        # integer samples
    (torch.randn(2, 1, 100, dtype=torch.complex64), TypeError, "floating"),
]


@pytest.mark.parametrize("x, error, message", BAD_INPUTS)
def test_bad_input_is_rejected_at_the_boundary(x, error, message):
    layer = FusedSincFilterbank(4, 15, pool_bins=20)
    with pytest.raises(error, match=message):
        layer(x)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_cutoffs_are_rejected(value):
    layer = FusedSincFilterbank(4, 15, pool_bins=8)
    with torch.no_grad():
        layer.sinc.band_hz_[2] = value
    with pytest.raises(ValueError, match="band_hz_ contains NaN or Inf"):
        layer(torch.randn(2, 1, 100))
    layer.eval()
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer(torch.randn(2, 1, 100))


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel_size": 2}, "kernel_size"),
    ({"sample_rate": 0}, "sample_rate"),
    ({"sample_rate": -16000}, "sample_rate"),
    ({"pool_bins": 0}, "pool_bins"),
    ({"backend": "cuda-magic"}, "unknown backend"),
    ({"precision": "fp8"}, "precision"),
    ({"out_channels": 0}, "out_channels"),
])
def test_bad_configuration_is_rejected(kwargs, message):
    config = {"out_channels": 4, "kernel_size": 15, "pool_bins": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        FusedSincFilterbank(**config)


def test_training_needs_more_than_one_value_per_channel():
    layer = FusedSincFilterbank(4, 15, pool_bins=1)
    with pytest.raises(ValueError, match="more than one value"):
        layer(torch.randn(1, 1, 15))
    layer.eval()
    assert layer(torch.randn(1, 1, 15)).shape == (1, 4, 1)


def test_backend_on_wrong_device_is_explained():
    from sincfb.backends import Backend, register_backend, _REGISTRY
    register_backend(Backend("gpu-only-test", forward=None, backward=None, devices=("cuda",)))
    try:
        layer = FusedSincFilterbank(4, 15, pool_bins=8, backend="gpu-only-test")
        with pytest.raises(ValueError, match="does not run on 'cpu'"):
            layer(torch.randn(2, 1, 100))
    finally:
        _REGISTRY.pop("gpu-only-test")
