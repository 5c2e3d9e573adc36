"""The decoded-audio cache: a dataset decoded once (mono, resampled) into a :class:`Corpus` whose
audio lives in one memory-mapped file per dataset (16-bit with a per-track step for real
recordings, float32 for generated audio), so epochs read clips without decoding anything. Files
that cannot be used are skipped with a message naming them and counted.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..base.fileio import atomic_open, atomic_write_bytes
from .audio import AudioError, Framing, fft_resample, read_mono, resample
from .tracks import DataError, TrackList, names_a_file

__all__ = ["STORAGES", "Corpus", "default_cache_dir", "load_corpus"]

STORAGES = ("auto", "float32", "int16")


def default_cache_dir() -> Path:
    """``$SINCFB_CACHE`` or ``$XDG_CACHE_HOME/sincfb`` or ``~/.cache/sincfb``."""
    if os.environ.get("SINCFB_CACHE"):
        return Path(os.environ["SINCFB_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sincfb"


@dataclass
class Corpus:
    """Decoded audio of a dataset: every usable track as one slice of a flat array.

    ``audio`` holds float32 samples, or int16 ones when ``steps`` is set: sample = int16 value x
    the track's step (its peak / 32767), a 16-bit quantisation relative to each track's own peak.
    """

    name: str
    classes: list[str]
    names: list[str]
    labels: np.ndarray
    splits: list[Optional[str]]
    audio: np.ndarray                    # flat float32 or int16, often a read-only memmap
    offsets: np.ndarray                  # int64, start of each track in ``audio``
    lengths: np.ndarray                  # int64
    sample_rate: int
    failures: list[str] = field(default_factory=list)   # messages of the files skipped
    steps: Optional[np.ndarray] = None   # float64 per track, for int16 storage

    def __len__(self) -> int:
        return len(self.names)

    def stored_track(self, index: int) -> tuple[np.ndarray, float]:
        """``(stored samples (a view), factor to multiply them by)`` of track ``index``."""
        start = int(self.offsets[index])
        samples = self.audio[start:start + int(self.lengths[index])]
        return samples, 1.0 if self.steps is None else float(self.steps[index])

    def track(self, index: int) -> np.ndarray:
        """The float32 samples of track ``index`` (a view when stored as float32)."""
        samples, factor = self.stored_track(index)
        return samples if self.steps is None else samples.astype(np.float32) * np.float32(factor)

    def clips(self, index: int, clip_samples: int, hop_samples: int) -> torch.Tensor:
        """Every clip of track ``index``: (num_clips, 1, clip_samples), the paper's layout."""
        return self.framed_clips(index, Framing(clip_samples, hop_samples))

    def framed_clips(self, index: int, framing: Framing) -> torch.Tensor:
        """Every clip of track ``index`` as ``framing`` lays them out (and scales them)."""
        samples, factor = self.stored_track(index)
        return framing.clips(samples, gain=factor)


def _cache_key(tracklist: TrackList, sample_rate: int, fixed_samples, storage: str) -> str:
    digest = hashlib.sha1(f"v2|{sample_rate}|{fixed_samples}|{storage}|{tracklist.name}|"
                          f"{tracklist.generated}".encode())
    for track in tracklist.tracks:
        digest.update(f"|{track.name}|{track.label}".encode())
        if track.path is not None:
            stat = track.path.stat() if names_a_file(track.path) else None
            digest.update(f"|{track.path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _decode_all(tracklist: TrackList, sample_rate: int, progress: bool, fixed_samples=None):
    """Yield ``(track, samples or None, failure message or None, duration ratio)`` per track;
    the ratio is the file's duration over the fixed duration (1 when the duration is kept)."""
    if tracklist.generated:
        from .synthetic import GENRES, synthesize_song

        params = tracklist.generated
        for track in _progress(tracklist.tracks, "synthesising", progress):
            index = int(track.name.rsplit(".", 1)[1])
            rng = np.random.default_rng([params["seed"], track.label, index])
            song = synthesize_song(GENRES[track.label], params["seconds"], sample_rate, rng)
            yield track, song if fixed_samples is None else fft_resample(song, fixed_samples), \
                None, 1.0 if fixed_samples is None else len(song) / fixed_samples
        return
    for track in _progress(tracklist.tracks, "decoding", progress):
        try:
            mono, rate = read_mono(track.path)
        except AudioError as error:
            known = tracklist.known_faults.get(track.name)
            yield track, None, f"{error}; {known}" if known else str(error), 1.0
            continue
        if fixed_samples is None:
            yield track, resample(mono, rate, sample_rate), None, 1.0
        else:
            yield track, fft_resample(mono, fixed_samples), None, \
                len(mono) / rate / (fixed_samples / sample_rate)


def _progress(items, description, enabled):
    from ..base.progress import progress_bar

    return progress_bar(items, description, "track", enabled)


def _storage(tracklist: TrackList, storage: str, fixed_samples) -> str:
    """'auto': int16 for recordings kept at their real length (full songs: half the disk of
    float32, and 16 bits relative to each track's peak is below any augmentation noise); float32
    for generated audio and for fixed-length decodes (30-s clips: small, and as the authors'
    float tensors)."""
    if storage not in STORAGES:
        raise DataError(f"cache storage must be one of {STORAGES}, got {storage!r}")
    if storage != "auto":
        return storage
    return "float32" if tracklist.generated or fixed_samples else "int16"


def _quantise(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 values and the step that restores the samples (peak / 32767)."""
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    step = peak / 32767 if peak > 0 else 1.0
    return np.round(np.asarray(samples, dtype=np.float64) / step).astype(np.int16), step


def load_corpus(tracklist: TrackList, sample_rate: int = 16000, cache_dir=None,
                progress: bool = True, use_cache: bool = True, fixed_samples: Optional[int] = None,
                storage: str = "auto") -> Corpus:
    """Decode (or reuse the cached decode of) every track of ``tracklist``.

    ``fixed_samples`` stretches every file to exactly that many samples (the authors' loader:
    30 s at 16 kHz) instead of resampling it at its real length; ``storage`` is 'float32',
    'int16' or 'auto' (see :func:`_storage`). The cache is ``<cache_dir>/<name>-<key>.f32`` or
    ``.i16`` with a ``.json`` index, keyed on the file list, sizes, modification times, sample
    rate, decoding and storage; both are written to temporary names, flushed and renamed into
    place, so an interrupted decode never leaves a corrupt cache. Unusable files are skipped,
    warned about by name, and listed in ``Corpus.failures``.
    """
    storage = _storage(tracklist, storage, fixed_samples)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    stem = cache_dir / f"{tracklist.name}-{_cache_key(tracklist, sample_rate, fixed_samples, storage)}"
    suffix = ".i16" if storage == "int16" else ".f32"
    if use_cache and stem.with_suffix(".json").is_file():
        corpus = _read_cache(stem, tracklist, sample_rate, storage)
        if corpus is not None:
            return corpus
    cache_dir.mkdir(parents=True, exist_ok=True)
    index = _write_audio(tracklist, sample_rate, progress, fixed_samples, storage,
                         stem.with_suffix(suffix))
    index.update(classes=tracklist.classes, sample_rate=sample_rate, storage=storage)
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(index).encode())
    return _read_cache(stem, tracklist, sample_rate, storage)


def _write_audio(tracklist, sample_rate, progress, fixed_samples, storage, path: Path) -> dict:
    """Decode every track into ``path`` (atomically); returns the index of what was kept."""
    kept, lengths, steps, failures, stretched = [], [], [], [], 0
    with atomic_open(path, "wb") as sink:
        for track, samples, failure, ratio in _decode_all(tracklist, sample_rate, progress,
                                                          fixed_samples):
            if failure:
                warnings.warn(f"skipping {failure}", stacklevel=3)
                failures.append(failure)
                continue
            if storage == "int16":
                samples, step = _quantise(samples)
                steps.append(step)
            sink.write(np.ascontiguousarray(samples, dtype=samples.dtype).tobytes())
            kept.append(track)
            lengths.append(len(samples))
            stretched += abs(ratio - 1) > 0.05
        if not kept:
            raise DataError(f"{tracklist.name}: none of the {len(tracklist.tracks)} files could be "
                            f"used; first problem: {failures[0] if failures else 'none'}")
    if stretched:
        warnings.warn(f"{stretched} of {len(kept)} tracks differ from the fixed duration of "
                      f"{fixed_samples / sample_rate:g} s by more than 5 %; resampling them to that "
                      "length (the authors' GTZAN loader) changes their speed and pitch. Pass "
                      "--fixed-seconds none to keep their real durations", stacklevel=3)
    return {"names": [t.name for t in kept], "labels": [t.label for t in kept],
            "splits": [t.split for t in kept], "lengths": lengths, "failures": failures,
            "steps": steps or None}


def _read_cache(stem: Path, tracklist: TrackList, sample_rate: int,
                storage: str) -> Optional[Corpus]:
    """The cached decode at ``stem``, or None (decode again) when its index is unreadable or
    does not describe this track list's decode (:func:`_index_fits`)."""
    try:
        index = json.loads(stem.with_suffix(".json").read_bytes())
        if not _index_fits(index, tracklist, sample_rate, storage):
            return None
        lengths = np.array(index["lengths"], dtype=np.int64)
        int16 = storage == "int16"
        audio = np.memmap(stem.with_suffix(".i16" if int16 else ".f32"),
                          dtype=np.int16 if int16 else np.float32, mode="r")
    except (OSError, ValueError, RecursionError):  # RecursionError: a planted, deeply nested index
        return None
    if audio.shape[0] != int(lengths.sum()):
        return None
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    steps = np.array(index["steps"], dtype=np.float64) if int16 else None
    return Corpus(tracklist.name, index["classes"], index["names"],
                  np.array(index["labels"], dtype=np.int64), index["splits"], audio, offsets,
                  lengths, sample_rate, index["failures"], steps)


def _index_fits(index, tracklist: TrackList, sample_rate: int, storage: str) -> bool:
    """Whether a cache index has the layout :func:`_write_audio` gives it, for this decode: one
    name, label, split and length (and int16 step) per kept track, each name a track of
    ``tracklist`` with that track's label and split, and the same classes, rate and storage."""
    keys = ("names", "labels", "splits", "lengths", "failures", "steps", "classes",
            "sample_rate", "storage")
    if not isinstance(index, dict) or not all(key in index for key in keys):
        return False
    names, count = index["names"], len(index["names"]) if isinstance(index["names"], list) else -1
    tracks = {t.name: t for t in tracklist.tracks}
    steps = index["steps"] if storage == "int16" else [1.0] * count
    return (index["classes"] == tracklist.classes and index["sample_rate"] == sample_rate
            and index["storage"] == storage and isinstance(index["failures"], list)
            and all(isinstance(v, list) and len(v) == count for v in (
                index["labels"], index["splits"], index["lengths"], steps))
            and all(isinstance(n, str) and n in tracks for n in names)
            and len(set(names)) == count
            and [tracks[n].label for n in names] == index["labels"]
            and [tracks[n].split for n in names] == index["splits"]
            and all(type(n) is int and n >= 0 for n in index["lengths"])
            and all(type(v) is float and math.isfinite(v) and v > 0 for v in steps))
