"""Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018) of a batch of clips.

Each training batch is replaced by ``share * clips + (1 - share) * clips[partner]`` with one
``share ~ Beta(alpha, alpha)`` per batch and ``partner`` a random permutation of the batch; the
loss is the same convex combination of the cross-entropies against both labels. Mixing raw
waveforms is what two pieces of music played at once sound like, so it is an augmentation every
front-end (sinc bank, log-mel, SincNet) sees the same way. It regularises a network trained from a
random trunk on a few hundred songs (README, "Real recordings"); ``alpha = 0`` switches it off.

The draws come from torch's global generator, whose state a checkpoint keeps, so a resumed run
mixes exactly as an uninterrupted one.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["MixedBatch", "mix_batch", "mixed_cross_entropy"]


class MixedBatch(NamedTuple):
    """A mixed batch: the clips, both label vectors and the first one's share of the mix."""
    clips: torch.Tensor
    labels: torch.Tensor
    partner_labels: torch.Tensor
    share: float


def mix_batch(clips: torch.Tensor, labels: torch.Tensor, alpha: float) -> MixedBatch:
    """Mix ``clips`` (B, ...) with a permutation of themselves, ``share ~ Beta(alpha, alpha)``.

    ``alpha <= 0`` returns the batch unchanged (share 1, each clip its own partner).
    """
    if alpha <= 0 or len(clips) < 2:
        return MixedBatch(clips, labels, labels, 1.0)
    share = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(clips)).to(clips.device)
    mixed = clips * share + clips[partner] * (1.0 - share)
    return MixedBatch(mixed, labels, labels[partner], share)


def mixed_cross_entropy(logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    """``share * CE(logits, labels) + (1 - share) * CE(logits, partner_labels)`` (means)."""
    loss = F.cross_entropy(logits, batch.labels)
    if batch.share == 1.0:
        return loss
    return batch.share * loss + (1.0 - batch.share) * F.cross_entropy(logits, batch.partner_labels)
