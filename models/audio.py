"""Reading audio for the models: decode any common format, mix to mono, resample, cut into clips."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
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
    Raises :class:`AudioError` naming the file for anything that is not usable music: missing,
    not audio, damaged, truncated (fewer frames than its header declares), empty, non-finite or
    silent. The decoders' own diagnostics (mpg123 prints notes on damaged MP3 frames) are kept
    off the terminal; the error says what they found.
    """
    samples, native_rate = _decode(Path(path))
    if samples.size == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: the audio contains NaN or Inf samples")
    mono = samples.mean(axis=1)
    if not allow_silent and float(np.abs(mono).max()) == 0.0:
        raise AudioError(f"{path}: the track is silent")
    return resample(mono, native_rate, sample_rate)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """``(samples (frames, channels) float32, sample rate)``, or :class:`AudioError` saying
    what is wrong with the file."""
    import soundfile  # imported here: the package is optional for users who never read files

    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    with _decoder_diagnostics_captured():
        try:
            info = soundfile.info(str(path))
            samples, native_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as error:  # soundfile raises several types; all mean "not usable audio"
            raise AudioError(f"{path}: {_decode_failure(path, error)}") from None
    declared, missing = _declared_frames(info)
    if missing or (declared and samples.shape[0] < declared * 0.98):
        raise AudioError(f"{path}: truncated: its header declares {declared} frames, only "
                         f"{samples.shape[0]} could be read (an interrupted copy or download?)")
    return samples, native_rate


def _decode_failure(path: Path, error: Exception) -> str:
    """A message that says what is wrong instead of libsndfile's generic one."""
    detail = str(error).split(": ", 1)[-1].strip().rstrip(".")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        return "the file is empty (0 bytes)"
    if "not a regular file" in detail or "Format not recognised" in detail or \
            "unknown format" in detail.lower():
        return (f"not a recognised audio file (its content is not {_FORMAT_NAMES}, whatever its "
                "name says)")
    return f"cannot decode the audio ({detail}); the file may be damaged or truncated"


_FORMAT_NAMES = "WAV, FLAC, Ogg, MP3, AU or AIFF"


def _declared_frames(info) -> tuple[int, bool]:
    """Frames the header declares, and whether a WAV-like header declares more data than the
    file holds (libsndfile then trims ``frames`` itself and notes 'data : N (should be M)')."""
    import re

    frames = max(int(info.frames), 0)
    short = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info or "",
                      re.MULTILINE)
    if short and int(short.group(1)) > int(short.group(2)) > 0:
        return round(frames * int(short.group(1)) / int(short.group(2))), True
    return frames, False


@contextlib.contextmanager
def _decoder_diagnostics_captured():
    """Point file descriptor 2 at a scratch file while C decoders run: mpg123 writes notes on
    damaged MP3 frames straight to stderr, past Python's ``sys.stderr``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:              # no usable stderr (a daemon): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


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
