"""SincNet (Ravanelli and Bengio, 2018) as a clip classifier: the first baseline of Table 1."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sincfb import SincConv

from ..common import (AudioClassifier, check_int_tuple, check_odd_lengths, check_positive_int,
                      check_probability, check_sample_rate)
from ..registry import register_model

__all__ = ["SincNet", "sincnet_stage_lengths"]


def sincnet_stage_lengths(clip_samples: int, filter_lengths: Sequence[int],
                          pool_lengths: Sequence[int]) -> list[int]:
    """Output length of each convolution stage (valid convolution, then a max-pool that drops a
    remainder); ``ValueError`` as soon as a stage has nothing left to convolve or pool."""
    lengths, length = [], clip_samples
    for i, (taps, pool) in enumerate(zip(filter_lengths, pool_lengths)):
        if taps > length:
            raise ValueError(f"convolution stage {i}: a {taps}-tap filter is longer than its "
                             f"input of {length} samples (clip_samples={clip_samples})")
        if pool > length - taps + 1:
            raise ValueError(f"convolution stage {i}: max-pool length {pool} exceeds the "
                             f"{length - taps + 1} positions left after the {taps}-tap filter")
        length = (length - taps + 1) // pool
        lengths.append(length)
    return lengths


def _sizes(size: str, table) -> dict:
    """SincNet keeps its architecture with the table's number of filters and 256-wide
    fully-connected layers; its sinc filters are the table's longest at the compact size and
    its own 251 taps at the laptop size."""
    taps = table["kernel_sizes"][-1] if size == "compact" else 251
    return {"cnn_n_filt": (table["num_filters"], 32, 32), "cnn_len_filt": (taps, 5, 5),
            "cnn_max_pool_len": (3, 3, 3), "fc_lay": (256, 256, 256)}


@register_model(_sizes, summary=(("SincNet", {}),), order=3)
class SincNet(AudioClassifier):
    """SincNet's architecture on clips of raw audio.

    Input LayerNorm over the clip (optional, as SincNet normalises its input) ->
    sinc layer (:class:`sincfb.SincConv`, ``cnn_n_filt[0]`` filters of ``cnn_len_filt[0]`` taps)
    -> |.| -> max-pool -> LayerNorm -> leaky ReLU; then for each further stage: Conv1d -> max-pool
    -> LayerNorm -> leaky ReLU; flatten; ``fc_lay`` fully-connected layers, each Linear ->
    BatchNorm1d -> leaky ReLU (-> Dropout); then ``classifier``, a Linear to ``num_classes``.
    Layer norms normalise each stage's whole (channels, time) map, with an affine per element.

    The defaults are the SincNet paper's sizes (80 sinc filters of 251 taps, two layers of 60
    filters of 5 taps, max-pools of 3, three layers of 2048) on the MS-SincResNet clip of 3 s at
    16 kHz; the first fully-connected layer then dominates the parameter count.

    :meth:`representation` returns the sinc stage's output (B, cnn_n_filt[0], T0); :meth:`embed`
    the last fully-connected layer's activations (B, fc_lay[-1]).
    """

    def __init__(self, num_classes: int, sample_rate: float = 16000, clip_samples: int = 48000,
                 cnn_n_filt: Sequence[int] = (80, 60, 60),
                 cnn_len_filt: Sequence[int] = (251, 5, 5),
                 cnn_max_pool_len: Sequence[int] = (3, 3, 3),
                 fc_lay: Sequence[int] = (2048, 2048, 2048), negative_slope: float = 0.2,
                 input_layer_norm: bool = True, dropout: float = 0.0, min_low_hz: float = 50,
                 min_band_hz: float = 50):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("clip_samples", clip_samples)
        check_sample_rate(sample_rate)
        filters = check_int_tuple("cnn_n_filt", cnn_n_filt)
        taps = check_int_tuple("cnn_len_filt", cnn_len_filt, length=len(filters))
        pools = check_int_tuple("cnn_max_pool_len", cnn_max_pool_len, length=len(filters))
        fc_lay = check_int_tuple("fc_lay", fc_lay, minimum=1)
        check_odd_lengths("cnn_len_filt[0] (the sinc filter length)", taps[:1])
        check_probability("dropout", dropout)
        lengths = sincnet_stage_lengths(clip_samples, taps, pools)
        self.num_classes, self.sample_rate = num_classes, sample_rate
        self.clip_samples = clip_samples
        self.pools = pools

        self.layerNorm = nn.LayerNorm(clip_samples) if input_layer_norm else nn.Identity()
        self.sinc = SincConv(filters[0], taps[0], sample_rate, min_low_hz=min_low_hz,
                             min_band_hz=min_band_hz)
        self.convs = nn.ModuleList(nn.Conv1d(filters[i - 1], filters[i], taps[i])
                                   for i in range(1, len(filters)))
        self.conv_norms = nn.ModuleList(nn.LayerNorm([c, t]) for c, t in zip(filters, lengths))
        self.act = nn.LeakyReLU(negative_slope)
        self.dropout = nn.Dropout(dropout)
        widths = (filters[-1] * lengths[-1],) + fc_lay
        self.fc = nn.Sequential(*(self._fc_block(widths[i], widths[i + 1], negative_slope, dropout)
                                  for i in range(len(fc_lay))))
        self.classifier = nn.Linear(fc_lay[-1], num_classes)

    @staticmethod
    def _fc_block(width_in: int, width_out: int, negative_slope: float, dropout: float):
        return nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out),
                             nn.LeakyReLU(negative_slope), nn.Dropout(dropout))

    def parts(self) -> dict[str, list[nn.Module]]:
        """Front-end: the input LayerNorm, the sinc layer and its LayerNorm; trunk: the later
        convolutions, their LayerNorms and the fully-connected layers; head: the classifier."""
        return {"front-end": [self.layerNorm, self.sinc, self.conv_norms[0]],
                "trunk": [*self.convs, *self.conv_norms[1:], self.fc], "head": [self.classifier]}

    @property
    def feature_dim(self) -> int:
        """Length of :meth:`embed`'s output (the last fully-connected layer's width)."""
        return self.classifier.in_features

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> the sinc stage's output (B, cnn_n_filt[0], T0): |sinc conv|, max-pooled,
        layer-normalised, leaky-ReLU'd."""
        x = self.layerNorm(self.as_clips(x))
        h = F.max_pool1d(torch.abs(self.sinc(x)), self.pools[0])
        return self.dropout(self.act(self.conv_norms[0](h)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> the last fully-connected layer's activations (B, fc_lay[-1])."""
        h = self.representation(x)
        for conv, norm, pool in zip(self.convs, self.conv_norms[1:], self.pools[1:]):
            h = self.dropout(self.act(norm(F.max_pool1d(conv(h), pool))))
        return self.fc(h.flatten(1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Features from :meth:`embed` -> logits (B, num_classes)."""
        return self.classifier(features)
