"""Pieces shared by every model: argument checks, the raw-audio input contract, parameter counts."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = ["AudioClassifier", "count_parameters", "check_positive_int", "check_odd_lengths",
           "check_probability", "check_int_tuple", "check_sample_rate"]


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``; else ``ValueError`` naming ``name``."""
    # bool is an int subclass; True as a size is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_int_tuple(name: str, values, length: int | None = None, minimum: int = 1) -> tuple:
    """Return ``values`` as a tuple of ints >= ``minimum`` (optionally of a fixed ``length``)."""
    if isinstance(values, (int, str)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of integers, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(values)}: {tuple(values)}")
    if len(values) == 0:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        check_positive_int(f"every entry of {name}", v, minimum)
    return tuple(values)


def check_odd_lengths(name: str, lengths: Sequence[int]) -> None:
    """Sinc filters are symmetric around a centre tap, so their length must be odd.

    SincNet silently uses L+1 for an even L; a model config that says 250 but runs 251 taps is a
    trap when counting output sizes, so the models refuse it instead.
    """
    for L in lengths:
        if L % 2 == 0:
            raise ValueError(f"{name} must be odd (a sinc filter has a centre tap), got {L}; "
                             f"use {L + 1} (what SincNet would silently use) or {L - 1}")


def check_probability(name: str, p) -> float:
    """Return ``p`` if it is a number in [0, 1)."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def check_sample_rate(sample_rate) -> float:
    """Return ``sample_rate`` if it is a positive finite number."""
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float))
            or not math.isfinite(sample_rate) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    return sample_rate


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class AudioClassifier(nn.Module):
    """Base of the models: clips of raw audio in, logits out.

    Subclasses set ``clip_samples`` and implement :meth:`embed` (clips -> pooled feature) and
    :meth:`classify` (pooled feature -> logits); ``forward`` chains them.
    """

    clip_samples: int

    def as_clips(self, x: torch.Tensor) -> torch.Tensor:
        """Check a batch of clips and return it as (B, 1, N): accepts (B, N) or (B, 1, N)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor of raw audio, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"audio must be a floating-point tensor, got dtype {x.dtype}")
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError("expected clips of shape (batch, samples) or (batch, 1, samples), got "
                             f"{tuple(x.shape)}")
        if x.shape[-1] != self.clip_samples:
            raise ValueError(f"expected clips of {self.clip_samples} samples (the model's "
                             f"clip_samples), got {x.shape[-1]}; cut or pad the audio into clips "
                             "of that length")
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Clips -> the pooled feature the classifier reads, (B, D)."""
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) -> logits (B, num_classes)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (B, N) or (B, 1, N) of raw audio -> logits (B, num_classes)."""
        return self.classify(self.embed(x))

    def parts(self) -> dict[str, list[nn.Module]]:
        """The model's modules by role: ``front-end`` (what turns audio into the representation),
        ``trunk`` (what turns that into the pooled feature) and ``head`` (the classifier); every
        parameter belongs to exactly one part (:func:`models.nets.summary.parameter_counts`)."""
        raise NotImplementedError
