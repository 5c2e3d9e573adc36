"""Every setting of a training run, in one light-weight dataclass.

:class:`TrainConfig` holds a run's recipe; its defaults are the ``paper`` recipe (see
:mod:`models.recipes` for both recipes and the source of every value). The module imports no
torch, so the command line can describe the settings (``--help``) without loading the models.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["TrainConfig", "TIE_BREAKS", "NOISES", "VOTES", "CUTOFFS", "CUTOFF_LR_SCALE", "SIZES"]

TIE_BREAKS = ("probability", "lowest")   # majority-vote ties: higher mean probability, lowest index
NOISES = ("gaussian", "uniform", "none")
VOTES = ("majority", "mean")
CUTOFFS = ("decay", "learn", "freeze")   # see models.cutoffs
SIZES = ("compact", "laptop", "paper")   # --size; see models.registry
#: The cut-offs' rate over the base rate with cutoffs='learn'. Measured on the laptop-size
#: MS-SincResNet from a random trunk, the cut-offs' |grad| / |param| is ~4e5 times smaller than
#: the trunk convolutions'; 1e5 brings their relative step within a factor of 4 of the trunk's,
#: under it because the lowest filters, whose cut-offs are the smallest numbers, get the largest
#: gradients (see README, "Sinc cut-offs").
CUTOFF_LR_SCALE = 1e5


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are the ``paper`` recipe (see
    :mod:`models.recipes` for both recipes and the source of every value)."""

    model: str = "mssincresnet"
    model_kwargs: dict = field(default_factory=dict)
    recipe: str = "paper"             # the recipe these settings started from (a record)
    size: Optional[str] = None        # the model size (--size) they started from (a record)
    sample_rate: int = 16000
    clip_seconds: float = 3.0
    hop_seconds: float = 0.5
    epochs: int = 200
    batch_size: int = 24              # clips per batch
    song_batches: bool = False        # True: each batch holds whole songs (all their clips)
    clips_per_song: int = 4
    lr: float = 0.005
    warmup_epochs: int = 5
    warmup_lr: float = 1e-5
    halve_every: int = 30
    halve_from: int = 0               # halvings at halve_from + k * halve_every, k >= 1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    cutoffs: str = "decay"            # sinc cut-offs: 'decay' (as any weight), 'learn', 'freeze'
    cutoff_lr_scale: float = CUTOFF_LR_SCALE   # with cutoffs='learn': their rate = lr x this
    gain: float = 0.1                 # amplitude x U[1 - gain, 1 + gain]
    noise_std: float = 0.02
    noise: str = "gaussian"           # 'gaussian', 'uniform' (U[-noise_std, noise_std]), 'none'
    audio_scale: float = 1.0          # samples are given to the model x this (32768: int16 scale)
    fixed_seconds: Optional[float] = None          # stretch every file to this duration
    frame_lookback_seconds: Optional[float] = None  # None: the paper's clips; 2.0: the authors'
    spp: bool = True                  # ResNet models: SPP head (paper) or avg pool + fc (authors)
    backbone: str = "imagenet"        # trunk initialisation: 'imagenet', 'random' or a .pth path
    vote: str = "majority"
    tie_break: str = "probability"    # majority ties: higher mean probability, or 'lowest' index
    select_on: str = "valid"          # the epoch kept as best.pt: 'valid', or 'test' (optimistic)
    eval_batch_size: int = 32
    workers: int = 0
    device: str = "auto"
    amp: str = "auto"                 # bf16 autocast: 'auto' (on CUDA), 'on', 'off'
    channels_last: str = "auto"
    seed: int = 0

    def __post_init__(self):
        for name, allowed in (("noise", NOISES), ("vote", VOTES), ("tie_break", TIE_BREAKS),
                              ("cutoffs", CUTOFFS),
                              ("select_on", ("valid", "test"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("audio_scale", "clip_seconds", "hop_seconds", "cutoff_lr_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.fixed_seconds is not None and not self.fixed_seconds > 0:
            raise ValueError(f"fixed_seconds must be positive or None, got {self.fixed_seconds!r}")
        if self.song_batches and self.batch_size % self.clips_per_song:
            raise ValueError(f"with song_batches, batch_size ({self.batch_size}) must be a multiple "
                             f"of clips_per_song ({self.clips_per_song})")
        lookback = self.frame_lookback_seconds
        if lookback is not None and not 0 <= lookback < self.clip_seconds:
            raise ValueError(f"frame_lookback_seconds must be in [0, clip_seconds = "
                             f"{self.clip_seconds}) or None, got {lookback!r}")

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))

    @property
    def fixed_samples(self) -> Optional[int]:
        """Samples every file is stretched to at decoding, or None (real durations)."""
        return None if self.fixed_seconds is None else int(round(self.fixed_seconds * self.sample_rate))

    @property
    def framing(self):
        """Where the clips of a song lie and the scale the model sees them at
        (a :class:`models.audio.Framing`)."""
        from .audio import Framing

        lookback = self.frame_lookback_seconds
        return Framing(self.clip_samples, self.hop_samples,
                       None if lookback is None else int(round(lookback * self.sample_rate)),
                       self.audio_scale)

    @classmethod
    def read_file(cls, path) -> dict:
        """The settings a JSON or TOML file gives, as a dict (unknown keys are an error)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise ValueError(f"{path}: cannot read the settings file ({error.strerror})") from None
        try:
            if path.suffix == ".toml":
                import tomllib
                values = tomllib.loads(text)
            else:
                values = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path}: not a valid {'TOML' if path.suffix == '.toml' else 'JSON'} "
                             f"settings file ({error})") from None
        cls._check_keys(values)
        return values

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        """Read a JSON or TOML file of fields (unknown keys are an error)."""
        return cls.from_dict(cls.read_file(path))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict, rejecting keys that are not fields."""
        cls._check_keys(values)
        return cls(**values)

    @classmethod
    def _check_keys(cls, values: dict) -> None:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; known: {sorted(known)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
