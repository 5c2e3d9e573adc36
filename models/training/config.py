"""Every setting of a training run, in one light-weight dataclass.

:class:`TrainConfig` holds a run's recipe; its defaults are the ``paper`` recipe (see
:mod:`models.training.recipes` for both recipes and the source of every value). The module imports no
torch, so the command line can describe the settings (``--help``) without loading the models.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..base.choices import (CUTOFFS, MAX_CLIP_SAMPLES, MAX_FIXED_SAMPLES, NOISES, SAMPLE_RATES,
                            SIZES, TIE_BREAKS, VOTES)
from ..base.messages import error_detail

__all__ = ["TrainConfig", "TIE_BREAKS", "NOISES", "VOTES", "SAMPLE_RATES", "MAX_CLIP_SAMPLES",
           "MAX_FIXED_SAMPLES", "CUTOFFS", "CUTOFF_LR_SCALE", "SIZES"]

#: The cut-offs' rate over the base rate with cutoffs='learn'. Measured on the laptop-size
#: MS-SincResNet from a random trunk, the cut-offs' |grad| / |param| is ~4e5 times smaller than
#: the trunk convolutions'; 1e5 brings their relative step within a factor of 4 of the trunk's,
#: under it because the lowest filters, whose cut-offs are the smallest numbers, get the largest
#: gradients (see README, "Sinc cut-offs").
CUTOFF_LR_SCALE = 1e5
# What each annotation of TrainConfig accepts (bool is no int here: 'epochs = true' is a typo)
_KINDS = {"int": ((int,), "an integer"), "float": ((int, float), "a finite number"),
          "bool": ((bool,), "true or false"), "str": ((str,), "a string"),
          "dict": ((dict,), "a table of settings")}
_COUNTS = ("batch_size", "clips_per_song", "eval_batch_size")            # at least 1
_NON_NEGATIVE = ("epochs", "warmup_epochs", "halve_every", "halve_from", "workers", "seed", "lr",
                 "warmup_lr", "momentum", "weight_decay", "gain", "noise_std", "mixup")


def _shown(value) -> str:
    """``repr(value)`` cut to 60 characters, for a message quoting a setting from a file."""
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


@dataclass
class TrainConfig:
    """Every setting of a training run; the defaults are the ``paper`` recipe (see
    :mod:`models.training.recipes` for both recipes and the source of every value)."""

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
    mixup: float = 0.0                # Beta(mixup, mixup) share of a batch mixed with itself; 0: off
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
        for f in dataclasses.fields(self):
            self.check_value(f.name, getattr(self, f.name))
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
        self._check_lengths()

    @classmethod
    def check_value(cls, name: str, value) -> None:
        """``ValueError`` unless ``value`` has the type of field ``name`` (an integer, a finite
        number, true or false, a string, a table; None where the field allows it) and lies in
        its range (a sample rate in :data:`SAMPLE_RATES`, counts >= 1, ...)."""
        annotation = {f.name: f.type for f in dataclasses.fields(cls)}[name]
        optional = annotation.startswith("Optional[")
        if value is None and optional:
            return
        types, wanted = _KINDS[annotation.removeprefix("Optional[").removesuffix("]")]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{name} must be {wanted}{' or None' if optional else ''}, got "
                             f"{_shown(value)}")
        low, high = SAMPLE_RATES
        if name == "sample_rate" and not low <= value <= high:
            raise ValueError(f"sample_rate must be in {low}..{high} Hz, got {value}")
        if name in _COUNTS and value < 1 or name in _NON_NEGATIVE and value < 0:
            raise ValueError(f"{name} must be {'at least 1' if name in _COUNTS else 'non-negative'}"
                             f", got {value}")

    def _check_lengths(self) -> None:
        """The clip and the fixed decoding length stay within what a file may ask for."""
        if self.clip_samples > MAX_CLIP_SAMPLES:
            raise ValueError(f"clip_seconds = {self.clip_seconds} gives {self.clip_samples} "
                             f"samples per clip, more than {MAX_CLIP_SAMPLES}")
        if self.fixed_samples is not None and self.fixed_samples > MAX_FIXED_SAMPLES:
            raise ValueError(f"fixed_seconds = {self.fixed_seconds} gives {self.fixed_samples} "
                             f"samples per file, more than {MAX_FIXED_SAMPLES}")

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
        (a :class:`models.data.audio.Framing`)."""
        from ..data.audio import Framing

        lookback = self.frame_lookback_seconds
        return Framing(self.clip_samples, self.hop_samples,
                       None if lookback is None else int(round(lookback * self.sample_rate)),
                       self.audio_scale)

    @classmethod
    def read_file(cls, path) -> dict:
        """The settings a JSON or TOML file gives, as a dict; ``ValueError`` naming the file for
        one that is not UTF-8 JSON or TOML holding a table, an unknown key, or a value of the
        wrong type or range (:meth:`check_value`)."""
        path = Path(path)
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        try:
            text = path.read_bytes().decode("utf-8")
            if kind == "TOML":
                import tomllib
                values = tomllib.loads(text)
            else:
                values = json.loads(text)
        except OSError as error:
            raise ValueError(f"{path}: cannot read the settings file ({error.strerror})") from None
        except (ValueError, RecursionError) as error:   # RecursionError: arrays nested too deep
            raise ValueError(f"{path}: not a valid {kind} settings file "
                             f"({error_detail(error)})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a {kind} settings file holds a table of settings, not "
                             f"{type(values).__name__} {_shown(values)}")
        try:
            cls._check_keys(values)
            for name, value in values.items():
                cls.check_value(name, value)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return values

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        """Read a JSON or TOML file of fields (unknown keys are an error); ``ValueError`` naming
        the file for any setting it cannot hold."""
        values = cls.read_file(path)
        try:
            return cls.from_dict(values)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict, rejecting keys that are not fields."""
        cls._check_keys(values)
        return cls(**values)

    @classmethod
    def _check_keys(cls, values: dict) -> None:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in values if key not in known]
        if unknown:
            raise ValueError(f"unknown training settings {_shown(sorted(map(str, unknown)))}; "
                             f"known: {sorted(known)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
