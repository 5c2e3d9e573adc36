"""Training clips drawn at random from a decoded corpus, with the paper's augmentation."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .audio import Framing
from .cache import Corpus

__all__ = ["RandomClipDataset"]


class RandomClipDataset(torch.utils.data.Dataset):
    """Training clips: each epoch draws ``clips_per_song`` random clips of every song (with
    replacement), with the paper's augmentation (gain ``U[1 - gain, 1 + gain]`` and additive
    noise, both applied after ``scale``).

    ``lookback_samples`` and ``scale`` choose the clip layout and sample scale (see
    :class:`models.data.audio.Framing`; None and 1.0: the paper's). Every random choice comes from a
    generator seeded by ``(seed, epoch, item)``, so an epoch's clips are the same whatever the
    number of workers and after a resume. Items are ``(clip (1, clip_samples) float32, label)``.
    """

    def __init__(self, corpus: Corpus, indices, clip_samples: int, hop_samples: int,
                 clips_per_song: int = 4, seed: int = 0, gain: float = 0.1,
                 noise_std: float = 0.02, noise: str = "gaussian",
                 lookback_samples: Optional[int] = None, scale: float = 1.0):
        if noise not in ("gaussian", "uniform", "none"):
            raise ValueError(f"noise must be gaussian, uniform or none, got {noise!r}")
        self.corpus, self.indices = corpus, np.asarray(indices, dtype=np.int64)
        self.framing = Framing(clip_samples, hop_samples, lookback_samples, scale)
        self.clip_samples = clip_samples
        self.clips_per_song, self.seed = clips_per_song, seed
        self.gain, self.noise_std, self.noise = gain, noise_std, noise
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose clips ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices) * self.clips_per_song

    def __getitem__(self, item: int):
        song = int(self.indices[item // self.clips_per_song])
        rng = np.random.default_rng([self.seed, self.epoch, item])
        samples, factor = self.corpus.stored_track(song)
        choice = int(rng.integers(self.framing.training_count(len(samples))))
        clip = self.framing.clip(samples, choice, factor)
        clip *= rng.uniform(1 - self.gain, 1 + self.gain)
        if self.noise == "gaussian":
            clip += rng.normal(0.0, self.noise_std, self.clip_samples).astype(np.float32)
        elif self.noise == "uniform":
            clip += rng.uniform(-self.noise_std, self.noise_std, self.clip_samples).astype(np.float32)
        return torch.from_numpy(clip)[None], int(self.corpus.labels[song])
