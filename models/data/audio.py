"""Reading audio for the models: decode any common format, mix to mono, resample, cut into clips.

Only soundfile and numpy are needed to decode, resample (``resampler='numpy'``) and cut clips, so
an exported model can classify files where torch is not installed; torch is imported only by
the functions that return tensors and by torchaudio's resampler.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..base.choices import SAMPLE_RATES
from .tracks import AUDIO_EXTENSIONS

__all__ = ["AudioError", "AUDIO_EXTENSIONS", "RESAMPLERS", "read_mono", "load_audio", "resample",
           "sinc_resample", "fft_resample", "clip_starts", "cut_clips", "Framing"]

RESAMPLERS = ("torchaudio", "numpy")


class AudioError(ValueError):
    """A file that cannot be used as music: unreadable, empty, truncated, non-finite or silent.
    The message names the file."""


def read_mono(path, allow_silent: bool = False) -> tuple[np.ndarray, int]:
    """``(samples, native sample rate)`` of ``path``, mixed to mono float32 in [-1, 1].

    Uses soundfile (wav, flac, ogg, mp3, au, aiff); 16-bit PCM reads as ``int16 / 32768``
    exactly. Raises :class:`AudioError` naming the file for anything that is not usable music:
    missing, not audio, damaged, truncated (fewer frames than its header declares), empty,
    non-finite, silent, or at a sample rate outside :data:`models.base.choices.SAMPLE_RATES`. The
    decoders' own diagnostics (mpg123 prints notes on damaged MP3 frames) are kept off the
    terminal; the error says what they found. Memory follows the audio that really decodes,
    never the frame count a header declares.
    """
    mono, native_rate = _decode(Path(path))
    if mono.size == 0:
        raise AudioError(f"{path}: the file holds no samples")
    if not np.isfinite(mono).all():        # a NaN or Inf in any channel reaches the mix
        raise AudioError(f"{path}: the audio contains NaN or Inf samples")
    if not allow_silent and float(np.abs(mono).max()) == 0.0:
        raise AudioError(f"{path}: the track is silent")
    return mono, int(native_rate)


# Samples (frames x channels) decoded per read: 4 MB of float32, whatever the channel count.
_BLOCK_SAMPLES = 1 << 20


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """``(mono samples float32, sample rate)``, or :class:`AudioError` saying what is wrong
    with the file."""
    import soundfile  # imported here: the package is optional for users who never read files

    try:
        if not path.exists():
            raise AudioError(f"{path}: no such file")
        if not path.is_file():
            raise AudioError(f"{path}: not a regular file")
    except OSError as error:            # a name longer than the system allows, a loop of links
        raise AudioError(f"{path}: cannot open the file ({error.strerror})") from None
    with _decoder_diagnostics_captured():
        try:
            with soundfile.SoundFile(str(path)) as handle:
                _check_native_rate(path, handle.samplerate)
                mono = _mono_blocks(handle)
                declared, missing = _declared_frames(handle)
        except AudioError:
            raise
        except Exception as error:  # soundfile raises several types; all mean "not usable audio"
            raise AudioError(f"{path}: {_decode_failure(path, error)}") from None
    if missing or (declared and mono.shape[0] < declared * 0.98):
        raise AudioError(f"{path}: truncated: its header declares {declared} frames, only "
                         f"{mono.shape[0]} could be read (an interrupted copy or download?)")
    return mono, handle.samplerate


def _check_native_rate(path: Path, rate: int) -> None:
    low, high = SAMPLE_RATES
    if not low <= rate <= high:
        raise AudioError(f"{path}: its header declares a sample rate of {rate} Hz, outside "
                         f"{low}..{high} Hz (a damaged file?)")


def _mono_blocks(handle) -> np.ndarray:
    """The rest of an open ``soundfile.SoundFile`` mixed to mono, decoded a bounded block at a
    time: a header that declares 2^36 frames makes soundfile's one-call read allocate them all
    up front, while here only the data that really decodes takes memory."""
    block = max(1, _BLOCK_SAMPLES // handle.channels)
    pieces = []
    while True:
        frames = handle.read(block, dtype="float32", always_2d=True)
        if len(frames):
            pieces.append(frames.mean(axis=1))
        if len(frames) < block:          # libsndfile reads less only at the end of the data
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


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


def load_audio(path, sample_rate: int = 16000, allow_silent: bool = False,
               fixed_samples: Optional[int] = None, resampler: str = "torchaudio") -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` Hz (1-D numpy array).

    By default the track keeps its duration (band-limited resampling: torchaudio's, or with
    ``resampler='numpy'`` the same filter computed by :func:`sinc_resample`, no torch needed).
    ``fixed_samples`` instead stretches the whole file to exactly that many samples with
    :func:`fft_resample`, whatever its length, as the authors' GTZAN loader does.
    """
    if resampler not in RESAMPLERS:
        raise ValueError(f"resampler must be one of {RESAMPLERS}, got {resampler!r}")
    mono, native_rate = read_mono(path, allow_silent)
    if fixed_samples is not None:
        return fft_resample(mono, fixed_samples)
    if resampler == "numpy":
        return sinc_resample(mono, native_rate, sample_rate)
    return resample(mono, native_rate, sample_rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal (identity when the rates agree).

    torchaudio's polyphase filter, or, for a pair of rates whose filter would be too large to
    build (:func:`_polyphase_too_large`: 44101 -> 16000 Hz needs 16000 x 44135 taps),
    :func:`fft_resample` to the same length."""
    if from_rate == to_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    divisor = math.gcd(int(from_rate), int(to_rate))
    p, q = int(from_rate) // divisor, int(to_rate) // divisor
    if _polyphase_too_large(p, q):
        return _fft_resample_rate(samples, p, q)
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(samples)), p, q)
    return out.numpy().astype(np.float32, copy=False)


# Taps of a polyphase resampling filter (q phases of 2 w + p taps) above which resampling goes
# through the FFT instead: 2^20 float32 taps are 4 MB, and building them takes about ten times
# that in float64 temporaries. Common pairs stay far below (44100 -> 16000 Hz: 72,800 taps);
# 7944 -> 16000 Hz (993 -> 2000 after the gcd) needs 2 M.
_POLYPHASE_TAPS = 1 << 20


def _polyphase_width(p: int, q: int, zero_crossings: int = 6, rolloff: float = 0.99) -> int:
    """Half-width ``w`` of the windowed-sinc filter from ``p`` to ``q`` (torchaudio's)."""
    return math.ceil(zero_crossings * p / (min(p, q) * rolloff))


def _polyphase_too_large(p: int, q: int, width: Optional[int] = None) -> bool:
    """Whether resampling ``p -> q`` (reduced by their gcd) needs a filter of more than
    ``_POLYPHASE_TAPS`` taps; the rates come from files, so they must not size an allocation."""
    width = _polyphase_width(p, q) if width is None else width
    return q * (2 * width + p) > _POLYPHASE_TAPS


def _fft_resample_rate(samples: np.ndarray, p: int, q: int) -> np.ndarray:
    """:func:`fft_resample` to the length torchaudio's resampler gives (``ceil(q n / p)``)."""
    return fft_resample(samples, max(1, math.ceil(q * len(samples) / p)))


def sinc_resample(samples: np.ndarray, from_rate: int, to_rate: int, zero_crossings: int = 6,
                  rolloff: float = 0.99) -> np.ndarray:
    """:func:`resample` in numpy alone: torchaudio's ``sinc_interp_hann`` resampler (its default
    arguments), the same kernel and framing, so the two agree to float32 rounding.

    With the rates reduced by their gcd to ``p -> q``, output sample ``k q + j`` is the dot
    product of the input from ``k p - w`` on with phase ``j``'s windowed-sinc kernel of
    ``2 w + p`` taps, ``w = ceil(zero_crossings p / (min(p, q) rolloff))``. Rates whose filter
    would be too large go through the FFT, as in :func:`resample`.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return x
    divisor = math.gcd(int(from_rate), int(to_rate))
    p, q = int(from_rate) // divisor, int(to_rate) // divisor
    width = _polyphase_width(p, q, zero_crossings, rolloff)
    if _polyphase_too_large(p, q, width):
        return _fft_resample_rate(x, p, q)
    cutoff = min(p, q) * rolloff
    # as torchaudio: the phases in float32, the tap offsets in float64
    phases = (np.arange(0, -q, -1, dtype=np.float32) / np.float32(q)).astype(np.float64)
    t = (phases[:, None] + np.arange(-width, width + p, dtype=np.float64)[None] / p) * cutoff
    t = np.clip(t, -zero_crossings, zero_crossings)
    window = np.cos(t * math.pi / zero_crossings / 2) ** 2
    t *= math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernels = np.where(t == 0, 1.0, np.sin(t) / t)
    kernels = (kernels * window * (cutoff / p)).astype(np.float32)      # (q, 2w + p)
    padded = np.pad(x, (width, width + p))
    frames = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::p]
    out = (frames @ kernels.T).reshape(-1)
    return out[: math.ceil(q * len(x) / p)].astype(np.float32, copy=False)


def fft_resample(samples: np.ndarray, num: int) -> np.ndarray:
    """The whole signal resampled to exactly ``num`` samples in the frequency domain (float32).

    The method of ``scipy.signal.resample`` (which the authors' dataloader.py calls): the signal
    is taken as one period of a periodic, band-limited function; the lowest ``min(n, num)``
    frequencies of its real FFT are kept (zeros added when upsampling), and the result is
    transformed back at ``num`` points and scaled by ``num / n``. When the shorter length is
    even, its Nyquist bin stands for both the positive and the negative frequency: it is doubled
    when shrinking (the two halves fold onto one real bin) and halved when growing (the bin is
    shared by two bins of the longer spectrum). Computed in float64.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.shape[0]
    if num < 1:
        raise ValueError(f"fft_resample needs a positive length, got {num}")
    if n == num:
        return x.astype(np.float32)
    spectrum = np.fft.rfft(x)
    shorter = min(n, num)
    kept = np.zeros(num // 2 + 1, dtype=np.complex128)
    kept[: shorter // 2 + 1] = spectrum[: shorter // 2 + 1]
    if shorter % 2 == 0:
        kept[shorter // 2] *= 2.0 if num < n else 0.5
    return (np.fft.irfft(kept, num) * (num / n)).astype(np.float32)


def clip_starts(num_samples: int, clip_samples: int, hop_samples: int) -> list[int]:
    """Start of every clip of a track: hop-spaced, never wrapping past the end. A track shorter
    than one clip gives the single start 0 (it is zero-padded)."""
    if num_samples <= clip_samples:
        return [0]
    return list(range(0, num_samples - clip_samples + 1, hop_samples))


def cut_clips(track: np.ndarray, clip_samples: int, hop_samples: int):
    """All clips of a track as a (num_clips, 1, clip_samples) float32 tensor, zero-padded."""
    return Framing(clip_samples, hop_samples).clips(track)


@dataclass(frozen=True)
class Framing:
    """Where the clips of a track lie, and the scale their samples are given to the model at.

    ``lookback_samples=None`` (the paper's layout): clip ``i`` is ``track[i*hop : i*hop + clip]``
    for every start that keeps the clip inside the track (:func:`clip_starts`).

    ``lookback_samples=b`` (the authors' dataloader.py, b = 2 s): ``len // hop`` frames, frame
    ``i`` is ``track[i*hop - b : i*hop - b + clip]`` *with Python's slice rules*, and when that
    slice is not a whole clip, ``track[i*hop - b:]`` left-aligned and zero-padded. So the first
    frames (``i*hop < b``) hold the last ``b - i*hop`` samples of the song followed by zeros, and
    the frames that run past the end are zero-padded. Training draws from all frames but the last,
    as their ``randint(0, frame_num - 1)`` does.

    ``scale`` multiplies the samples (32768 gives the int16 scale the authors read audio at);
    ``gain`` of :meth:`clip` is a further factor (the cache's dequantisation step).
    """

    clip_samples: int
    hop_samples: int
    lookback_samples: Optional[int] = None
    scale: float = 1.0

    def __post_init__(self):
        if self.clip_samples < 1 or self.hop_samples < 1:
            raise ValueError(f"clip and hop must be at least one sample, got {self.clip_samples} "
                             f"and {self.hop_samples}")
        if self.lookback_samples is not None and not 0 <= self.lookback_samples < self.clip_samples:
            raise ValueError(f"the frame look-back ({self.lookback_samples} samples) must be in "
                             f"[0, clip length {self.clip_samples})")

    def count(self, num_samples: int) -> int:
        """Number of clips of a track of ``num_samples`` samples (at least one)."""
        if self.lookback_samples is None:
            return len(clip_starts(num_samples, self.clip_samples, self.hop_samples))
        return max(1, num_samples // self.hop_samples)

    def training_count(self, num_samples: int) -> int:
        """How many of the first clips training draws from (all, or all but the last frame)."""
        count = self.count(num_samples)
        return count - 1 if self.lookback_samples is not None and count > 1 else count

    def clip(self, track: np.ndarray, index: int, gain: float = 1.0) -> np.ndarray:
        """Clip ``index`` of ``track`` (any numeric array) as float32, zero-padded, scaled."""
        out = np.zeros(self.clip_samples, dtype=np.float32)
        if self.lookback_samples is None:         # clip_starts: i * hop, or 0 for a short track
            start = index * self.hop_samples if len(track) > self.clip_samples else 0
            piece = track[start:start + self.clip_samples]
        else:
            first = index * self.hop_samples - self.lookback_samples   # negative: from the end
            piece = track[first:first + self.clip_samples]
            if len(piece) != self.clip_samples:
                piece = track[first:]
        out[: len(piece)] = piece
        factor = gain * self.scale
        if factor != 1.0:
            out *= np.float32(factor)
        return out

    def clip_array(self, track: np.ndarray, indices: Optional[Sequence[int]] = None,
                   gain: float = 1.0) -> np.ndarray:
        """Clips ``indices`` (default: all) of ``track`` as a (n, 1, clip_samples) float32
        array (numpy only)."""
        if indices is None:
            indices = range(self.count(len(track)))
        return np.stack([self.clip(track, int(i), gain) for i in indices])[:, None]

    def clips(self, track: np.ndarray, indices: Optional[Sequence[int]] = None,
              gain: float = 1.0):
        """:meth:`clip_array` as a torch tensor."""
        import torch

        return torch.from_numpy(self.clip_array(track, indices, gain))
