"""Reading audio for the models: decode any common format, mix to mono, resample, cut into clips."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["AudioError", "AUDIO_EXTENSIONS", "load_audio", "clip_starts", "cut_clips"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif")


class AudioError(ValueError):
    """A file that cannot be used as music: unreadable, empty, truncated, non-finite or silent.
    The message names the file."""


def load_audio(path, sample_rate: int = 16000, allow_silent: bool = False) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` Hz (1-D numpy array).

    Uses soundfile (wav, flac, ogg, mp3, au, aiff) and torchaudio's band-limited resampler.
    Raises :class:`AudioError` naming the file for anything that is not usable music.
    """
    import soundfile  # imported here: the package is optional for users who never read files

    path = Path(path)
    try:
        samples, native_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types; all mean "not readable audio"
        raise AudioError(f"{path}: cannot decode audio ({error})") from None
    if samples.size == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: the audio contains NaN or Inf samples")
    mono = samples.mean(axis=1)
    if not allow_silent and float(np.abs(mono).max()) == 0.0:
        raise AudioError(f"{path}: the track is silent")
    return resample(mono, native_rate, sample_rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal (identity when the rates agree)."""
    if from_rate == to_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import torchaudio.functional as AF

    divisor = math.gcd(int(from_rate), int(to_rate))
    out = AF.resample(torch.from_numpy(np.ascontiguousarray(samples)), from_rate // divisor,
                      to_rate // divisor)
    return out.numpy().astype(np.float32, copy=False)


def clip_starts(num_samples: int, clip_samples: int, hop_samples: int) -> list[int]:
    """Start of every clip of a track: hop-spaced, never wrapping past the end. A track shorter
    than one clip gives the single start 0 (it is zero-padded)."""
    if num_samples <= clip_samples:
        return [0]
    return list(range(0, num_samples - clip_samples + 1, hop_samples))


def cut_clips(track: np.ndarray, clip_samples: int, hop_samples: int) -> torch.Tensor:
    """All clips of a track as a (num_clips, 1, clip_samples) float32 tensor, zero-padded."""
    starts = clip_starts(len(track), clip_samples, hop_samples)
    clips = np.zeros((len(starts), clip_samples), dtype=np.float32)
    for row, start in enumerate(starts):
        piece = track[start:start + clip_samples]
        clips[row, : len(piece)] = piece
    return torch.from_numpy(clips)[:, None]
