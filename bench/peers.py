"""What a user would write instead of sincfb: the peers the benchmark times beside it.

Each peer is one bank, (B, 1, N) raw audio -> (B, K, P), followed by BatchNorm1d, ReLU and
AdaptiveAvgPool1d like the fused layer, so every row times the same job:

- ``peer-speechbrain``: speechbrain's ``SincConv`` (``speechbrain.nnet.CNN``). Its input is
  (batch, time) and its output (batch, time, channels): the adapter squeezes the channel and
  transposes the output. ``padding='valid'`` (its default 'same' pads with reflections, which
  SincNet's layer does not).
- ``peer-asteroid``: asteroid-filterbanks' ``ParamSincFB`` in an ``Encoder``, stride 1 (its
  default is L // 2). A *different filter family*: K filters are K/2 SincNet band-passes and their
  K/2 quadrature (sine) partners; compared at equal filter count K.
- ``fftconv-composite``: SincNet filters (``sincfb.SincConv``) convolved by
  ``torchaudio.functional.fftconvolve`` (mode 'valid', the kernel flipped: it convolves, conv1d
  correlates), the best composite the ecosystem offers for long filters.
- ``naive-fp32-compile``: ``torch.compile`` of the fp32 naive composite.

These packages are the optional extra ``.[peers]``; a peer that is not installed is reported as
such, not timed. :func:`peer_version` gives the version each row records.
"""
from __future__ import annotations

import sys
from importlib import metadata
from typing import Optional

import torch
from torch import nn

import sincfb
from bench.common import SAMPLE_RATE

__all__ = ["PEERS", "PEER_NOTES", "make_peer_bank", "installed_peers", "peer_fields",
           "peer_version", "peer_available"]


#: peer name -> the distribution that provides it (None: torch or torchaudio themselves)
PEERS = {"peer-speechbrain": "speechbrain", "peer-asteroid": "asteroid-filterbanks",
         "fftconv-composite": "torchaudio", "naive-fp32-compile": "torch"}

#: What each row's reader must know about how the peer was adapted.
PEER_NOTES = {
    "peer-speechbrain": "speechbrain SincConv, padding='valid'; input (B,1,N)->(B,N), output "
                        "(B,T,K) transposed to (B,K,T)",
    "peer-asteroid": "asteroid ParamSincFB + Encoder, stride 1; K = K/2 band-pass + K/2 "
                     "quadrature filters (another family), equal filter count",
    "fftconv-composite": "sincfb.SincConv filters + torchaudio.functional.fftconvolve "
                         "(valid, flipped kernel) + BatchNorm1d + ReLU + AdaptiveAvgPool1d",
    "naive-fp32-compile": "torch.compile of the fp32 naive composite",
}


def peer_version(name: str) -> Optional[str]:
    """The installed version of the distribution behind peer ``name`` (None: not installed)."""
    try:
        return metadata.version(PEERS[name])
    except metadata.PackageNotFoundError:
        return None


def installed_peers() -> list[str]:
    """The peers that can be built here, in :data:`PEERS` order."""
    return [name for name in PEERS if peer_available(name)]


def peer_fields(impl: str) -> dict:
    """What a result row of ``impl`` records about it as a peer (its version and how it was
    adapted); nothing for sincfb's own cases and the naive baselines."""
    if impl not in PEERS:
        return {}
    return {"impl_version": peer_version(impl), "impl_note": PEER_NOTES[impl]}


def peer_available(name: str) -> bool:
    """Whether peer ``name`` can be built here."""
    return name in PEERS and peer_version(name) is not None


class _Head(nn.Module):
    """BatchNorm1d, ReLU and AdaptiveAvgPool1d after a peer's filterbank output (B, K, T)."""

    def __init__(self, filters: int, bins: int):
        super().__init__()
        self.norm, self.pool = nn.BatchNorm1d(filters), nn.AdaptiveAvgPool1d(bins)

    def forward(self, responses: torch.Tensor) -> torch.Tensor:
        """(B, K, T) -> (B, K, P)."""
        return self.pool(torch.relu(self.norm(responses)))


def _drop_unloaded_speechbrain_redirects() -> None:
    """Remove the lazy aliases speechbrain puts in ``sys.modules`` (old module names, optional
    integrations such as k2) that nothing has loaded yet.

    Reading any attribute of one, even ``__file__``, imports its target, and for an integration
    whose package is not installed that raises ImportError instead of AttributeError. Tools that
    walk ``sys.modules`` (hypothesis, ``inspect``, some profilers) then fail in whatever runs
    next in the same process. The benchmark uses none of these aliases.
    """
    try:
        from speechbrain.utils.importutils import LazyModule
    except ImportError:
        return
    for name, module in list(sys.modules.items()):
        if isinstance(module, LazyModule) and module.lazy_module is None:
            del sys.modules[name]


class SpeechBrainBank(nn.Module):
    """speechbrain's SincConv adapted to (B, 1, N) in, (B, K, P) out."""

    def __init__(self, filters: int, length: int, bins: int):
        super().__init__()
        from speechbrain.nnet.CNN import SincConv

        _drop_unloaded_speechbrain_redirects()
        self.sinc = SincConv(out_channels=filters, kernel_size=length, in_channels=1,
                             padding="valid", sample_rate=SAMPLE_RATE)
        self.head = _Head(filters, bins)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) -> (B, K, P)."""
        return self.head(self.sinc(waveforms[:, 0]).transpose(1, 2))


class AsteroidBank(nn.Module):
    """asteroid-filterbanks' ParamSincFB in an Encoder, stride 1."""

    def __init__(self, filters: int, length: int, bins: int):
        super().__init__()
        from asteroid_filterbanks import Encoder, ParamSincFB

        self.encoder = Encoder(ParamSincFB(filters, length, stride=1, sample_rate=SAMPLE_RATE))
        self.head = _Head(filters, bins)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) -> (B, K, P)."""
        return self.head(self.encoder(waveforms))


class FFTConvBank(nn.Module):
    """SincNet filters by FFT convolution (torchaudio), then the usual head."""

    def __init__(self, filters: int, length: int, bins: int):
        super().__init__()
        self.sinc = sincfb.SincConv(filters, length, SAMPLE_RATE)
        self.head = _Head(filters, bins)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) -> (B, K, P)."""
        from torchaudio.functional import fftconvolve

        taps = self.sinc.filters(dtype=waveforms.dtype).flip(-1)[None]     # (1, K, L)
        return self.head(fftconvolve(waveforms, taps, mode="valid"))


def make_peer_bank(name: str, filters: int, length: int, bins: int,
                   naive: Optional[nn.Module] = None) -> nn.Module:
    """One bank of peer ``name``; ``naive`` is the composite ``naive-fp32-compile`` compiles."""
    if not peer_available(name):
        raise RuntimeError(f"{name} needs the package {PEERS.get(name, '?')!r} (pip install "
                           "-e '.[peers]')")
    if name == "peer-speechbrain":
        return SpeechBrainBank(filters, length, bins)
    if name == "peer-asteroid":
        return AsteroidBank(filters, length, bins)
    if name == "fftconv-composite":
        return FFTConvBank(filters, length, bins)
    if name == "naive-fp32-compile":
        return naive
    raise ValueError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
