"""The order and pace of training: the epoch's permutation of clips (sharded across ranks,
resumable part-way) and the learning-rate schedule."""
from __future__ import annotations

import numpy as np
import torch

from .config import TrainConfig

__all__ = ["EpochSampler", "learning_rate"]


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The rate of (0-based) ``epoch``: ``warmup_lr`` for the first ``warmup_epochs``, then ``lr``
    halved at epochs ``halve_from + k * halve_every`` (k >= 1). With ``halve_from=0`` that is
    30, 60, ... as in the authors' main.py (``epoch % 30 == 0``)."""
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    return config.lr * 0.5 ** (max(0, epoch - config.halve_from) // max(1, config.halve_every))


class EpochSampler(torch.utils.data.Sampler):
    """A permutation of the epoch's items fixed by (seed, epoch), sharded across DDP ranks, that
    can start part-way through (to resume inside an epoch).

    ``group`` > 1 keeps runs of ``group`` consecutive items together (the clips of one song):
    whole groups are shuffled and sharded, so a batch of ``k * group`` items holds ``k`` songs
    with all their clips, as the authors' loader builds its batches of 8 songs x 3 clips.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1, group: int = 1):
        self.size, self.seed, self.rank, self.world, self.group = size, seed, rank, world, group
        self.epoch, self.start = 0, 0

    def order(self) -> np.ndarray:
        groups = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.size // self.group)
        mine = groups[self.rank::self.world]
        return (mine[:, None] * self.group + np.arange(self.group)).reshape(-1)

    def __iter__(self):
        return iter(self.order()[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, len(self.order()) - self.start)
