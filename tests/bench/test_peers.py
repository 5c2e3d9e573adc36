"""The peers the benchmark times beside sincfb (bench/peers.py): each is one bank from (B, 1, N)
raw audio to (B, K, P), adapted to its library's layout; the FFT composite computes the same
function as the naive conv1d composite."""
from __future__ import annotations

import pytest
import torch

from bench.harness import make_bank, naive_bank
from bench.peers import PEERS, make_peer_bank, peer_available, peer_version
from tests.tolerance import relative_error, tolerance


@pytest.mark.parametrize("name", sorted(PEERS))
def test_each_installed_peer_maps_audio_to_pooled_bands(name):
    if not peer_available(name):
        pytest.skip(f"{PEERS[name]} is not installed (pip install -e '.[peers]')")
    assert peer_version(name)
    bank = make_bank(name, 8, 63, 16).train()
    x = torch.randn(2, 1, 1500, requires_grad=True)
    out = bank(x)
    assert out.shape == (2, 8, 16) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_the_fft_composite_is_the_naive_composite():
    if not peer_available("fftconv-composite"):
        pytest.skip("torchaudio is not installed")
    torch.manual_seed(0)
    fft_bank = make_peer_bank("fftconv-composite", 6, 101, 9).double().train()
    naive = naive_bank(6, 101, 9).double().train()
    naive[0].load_state_dict(fft_bank.sinc.state_dict())
    x = torch.randn(3, 1, 2000, dtype=torch.float64)
    assert relative_error(fft_bank(x), naive(x)) <= tolerance(torch.float64)


def test_a_missing_peer_is_a_clear_error(monkeypatch):
    import bench.peers as peers

    monkeypatch.setattr(peers, "peer_version", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install -e '\.\[peers\]'"):
        peers.make_peer_bank("peer-asteroid", 4, 31, 4)


def test_speechbrain_leaves_sys_modules_walkable():
    """speechbrain registers lazy aliases whose attribute lookups import optional packages (k2)
    and raise ImportError; hypothesis walks sys.modules for constants and failed in a later test
    of the same process. After its bank is built, every module answers ``__file__`` lookups."""
    import sys

    if not peer_available("peer-speechbrain"):
        pytest.skip("speechbrain is not installed")
    make_peer_bank("peer-speechbrain", 4, 31, 4)
    for module in list(sys.modules.values()):
        getattr(module, "__file__", None)
