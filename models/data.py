"""Music datasets for genre classification: discovery, splits, a decoded-audio cache, clip sampling.

A dataset is first described as a :class:`TrackList` (files, labels, optional predefined splits),
from GTZAN, ISMIR2004, a folder per class, a CSV manifest or the embedded synthetic corpus. It is
then decoded once — mono, resampled — into a :class:`Corpus` whose audio lives in one memory-mapped
float32 file per dataset, so epochs read clips without decoding anything. Files that cannot be used
are skipped with a message naming them and counted.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, AudioError, clip_starts, cut_clips, load_audio

__all__ = ["DataError", "Track", "TrackList", "Corpus", "GTZAN_GENRES", "ISMIR2004_CLASSES",
           "gtzan", "ismir2004", "folder_per_class", "manifest", "synthetic_tracklist",
           "open_tracklist", "restrict_classes", "stratified_folds", "resolved_protocol",
           "make_splits", "load_corpus",
           "RandomClipDataset", "default_cache_dir"]

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
                "reggae", "rock")
GTZAN_CORRUPT = ("jazz.00054",)        # known unreadable in the public GTZAN release
ISMIR2004_CLASSES = ("classical", "electronic", "jazz_blues", "metal_punk", "rock_pop", "world")
ISMIR2004_SUBSETS = {"training": "train", "development": "valid", "evaluation": "test"}


class DataError(ValueError):
    """A dataset that cannot be used as given; the message says which file or folder and why."""


@dataclass
class Track:
    """One song: where its audio is (``None`` for generated audio), its label and name."""

    path: Optional[Path]
    label: int
    name: str
    split: Optional[str] = None          # 'train' / 'valid' / 'test' when the dataset fixes it


@dataclass
class TrackList:
    """A dataset before decoding: its songs and class names."""

    name: str
    tracks: list[Track]
    classes: list[str]
    generated: Optional[dict] = None     # synthetic corpus parameters, when the audio is generated

    def __post_init__(self):
        counts = collections.Counter(track.name for track in self.tracks)
        repeated = [name for name, count in counts.items() if count > 1]
        if repeated:
            raise DataError(f"{self.name}: {len(repeated)} track name(s) occur twice (first: "
                            f"{repeated[0]!r}); tracks are matched by name, so names must be "
                            "unique")

    @property
    def labels(self) -> np.ndarray:
        return np.array([t.label for t in self.tracks], dtype=np.int64)


# --------------------------------------------------------------------------------- discovery
def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def gtzan(root) -> TrackList:
    """GTZAN: ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``); ``root`` may be the folder above
    ``genres`` or ``genres`` itself. The known-corrupt ``jazz.00054`` is skipped with a warning."""
    root = Path(root)
    genres_dir = root / "genres" if (root / "genres").is_dir() else root
    tracks = []
    for label, genre in enumerate(GTZAN_GENRES):
        folder = genres_dir / genre
        if not folder.is_dir():
            raise DataError(f"{folder}: GTZAN genre folder missing")
        for path in _audio_files(folder):
            name = path.stem
            if name in GTZAN_CORRUPT:
                warnings.warn(f"{path}: skipping {name}, known to be corrupt in GTZAN", stacklevel=2)
                continue
            tracks.append(Track(path, label, name))
    if not tracks:
        raise DataError(f"{genres_dir}: no GTZAN audio files found")
    return TrackList("gtzan", tracks, list(GTZAN_GENRES))


def gtzan_filtered_splits() -> dict[str, str]:
    """The fault-filtered GTZAN split (443 train / 197 valid / 290 test) as torchaudio ships it."""
    from torchaudio.datasets import gtzan as torchaudio_gtzan

    split = {name: "train" for name in torchaudio_gtzan.filtered_train}
    split.update({name: "valid" for name in torchaudio_gtzan.filtered_valid})
    split.update({name: "test" for name in torchaudio_gtzan.filtered_test})
    return split


def _resolve(root: Path, subset: str, relative: str) -> Optional[Path]:
    for base in (root / "audio" / subset, root / "audio", root):
        candidate = base / relative
        if candidate.is_file():
            return candidate
    return None


def ismir2004(root) -> TrackList:
    """ISMIR2004 genre: ``metadata/{training,development,evaluation}/tracklist.csv`` (class, artist,
    album, track, track number, file path[, id]) beside the ``audio/`` tree; 6 classes; the three
    subsets become the train / valid / test splits."""
    root = Path(root)
    tracks, classes = [], list(ISMIR2004_CLASSES)
    for subset, split in ISMIR2004_SUBSETS.items():
        listing = root / "metadata" / subset / "tracklist.csv"
        if not listing.is_file():
            raise DataError(f"{listing}: ISMIR2004 track list missing")
        with open(listing, newline="", encoding="utf-8", errors="replace") as handle:
            for row_number, row in enumerate(csv.reader(handle), start=1):
                if not row or row[0].strip().lower() == "class":
                    continue
                if len(row) < 6:
                    raise DataError(f"{listing}:{row_number}: expected 6 columns, got {len(row)}")
                label = row[0].strip().lower().replace("-", "_").replace(" ", "_")
                if label not in classes:
                    raise DataError(f"{listing}:{row_number}: unknown class {row[0]!r}; "
                                    f"expected one of {classes}")
                path = _resolve(root, subset, row[5].strip())
                if path is None:
                    warnings.warn(f"{listing}:{row_number}: audio file {row[5]!r} not found; skipped",
                                  stacklevel=2)
                    continue
                tracks.append(Track(path, classes.index(label), f"{subset}/{row[5].strip()}", split))
    if not tracks:
        raise DataError(f"{root}: no ISMIR2004 audio files found")
    return TrackList("ismir2004", tracks, classes)


def folder_per_class(root) -> TrackList:
    """Any ``<root>/<class>/<audio files>`` tree; class names are the sorted folder names."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    tracks, classes = [], []
    for folder in class_dirs:
        files = _audio_files(folder)
        if not files:
            warnings.warn(f"{folder}: no audio files; class {folder.name!r} ignored", stacklevel=2)
            continue
        classes.append(folder.name)
        tracks.extend(Track(p, len(classes) - 1, f"{folder.name}/{p.name}") for p in files)
    if len(classes) < 2:
        raise DataError(f"{root}: need at least two class folders holding audio files "
                        f"({AUDIO_EXTENSIONS}); found {len(classes)}")
    return TrackList(root.name, tracks, classes)


def manifest(csv_path, classes: Optional[list[str]] = None,
             ignore_splits: bool = False) -> TrackList:
    """A CSV manifest with columns ``path,label[,split]`` (a header row is optional).

    Relative paths are relative to the CSV's folder, and a track's name is its path as written
    (relative to that folder), so ``a/01.mp3`` and ``b/01.mp3`` are two songs. Either every row
    gives a split (train, valid or test) or none does (then the splits are cross-validation
    folds); a mix is an error naming the first row without one, unless ``ignore_splits`` (the
    command line's ``--protocol cv``) says to ignore the column. ``classes`` fixes the label set
    and its order; a label outside it is an error. Without it, labels that differ only in case
    or spacing (likely typos) are warned about.
    """
    csv_path = Path(csv_path)
    rows = _manifest_rows(csv_path)
    if not ignore_splits:
        _check_manifest_splits(csv_path, rows)
    known = list(classes) if classes else sorted({label for _, _, label, _ in rows})
    if not classes:
        _warn_similar_labels(csv_path, known)
    tracks = []
    for row_number, path, label, split in rows:
        if label not in known:
            raise DataError(f"{csv_path}:{row_number}: unknown label {label!r}"
                            + _did_you_mean(label, known) + f"; the classes are {known}")
        name = path.as_posix()
        path = path if path.is_absolute() else csv_path.parent / path
        tracks.append(Track(path, known.index(label), name, None if ignore_splits else split))
    return TrackList(csv_path.stem, tracks, known)


def _manifest_rows(csv_path: Path) -> list[tuple]:
    """``(row number, path, label, split or None)`` of every row of a manifest."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such manifest file")
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row_number, row in enumerate(csv.reader(handle), start=1):
            if not row or not any(cell.strip() for cell in row) or \
                    (row_number == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError(f"{csv_path}:{row_number}: expected path,label[,split], got "
                                f"{','.join(row)!r}")
            split = row[2].strip().lower() if len(row) > 2 and row[2].strip() else None
            if split not in (None, "train", "valid", "test"):
                raise DataError(f"{csv_path}:{row_number}: split must be train, valid or test, "
                                f"got {row[2]!r}")
            rows.append((row_number, Path(row[0].strip()), row[1].strip(), split))
    if not rows:
        raise DataError(f"{csv_path}: the manifest lists no tracks")
    return rows


def _check_manifest_splits(csv_path: Path, rows) -> None:
    with_split = [r for r in rows if r[3]]
    if with_split and len(with_split) < len(rows):
        row_number = next(r[0] for r in rows if not r[3])
        raise DataError(f"{csv_path}:{row_number}: this row gives no split while "
                        f"{len(with_split)} other rows do; give every row a split (train, valid "
                        "or test), or pass --protocol cv to ignore the split column")


def _warn_similar_labels(csv_path: Path, labels: list[str]) -> None:
    by_key: dict[str, list[str]] = {}
    for label in labels:
        by_key.setdefault(" ".join(label.lower().split()), []).append(label)
    for group in by_key.values():
        if len(group) > 1:
            warnings.warn(f"{csv_path}: labels {group} differ only in case or spacing and count "
                          "as separate classes; pass --classes to fix the class list",
                          stacklevel=3)


def _did_you_mean(label: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(label, known, n=1) or \
        [k for k in known if k.lower() == label.lower()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def restrict_classes(tracklist: TrackList, classes: list[str]) -> TrackList:
    """The same songs with the class list fixed to ``classes`` (in that order): a class the
    dataset has that is not listed is an error, as is a listed class without songs."""
    extra = [c for c in tracklist.classes if c not in classes]
    if extra:
        raise DataError(f"{tracklist.name}: class(es) {extra} are not in --classes {classes}"
                        + _did_you_mean(extra[0], classes))
    present = {tracklist.classes[t.label] for t in tracklist.tracks}
    empty = [c for c in classes if c not in present]
    if empty:
        raise DataError(f"{tracklist.name}: no songs of class(es) {empty} given in --classes")
    tracks = [dataclasses.replace(t, label=classes.index(tracklist.classes[t.label]))
              for t in tracklist.tracks]
    return dataclasses.replace(tracklist, tracks=tracks, classes=list(classes))


def synthetic_tracklist(songs_per_genre: int = 24, seconds: float = 6.0, seed: int = 0) -> TrackList:
    """The embedded synthetic corpus (see :mod:`models.synthetic`), described without audio."""
    from .synthetic import GENRES

    tracks = [Track(None, label, f"{genre.name}.{i:05d}")
              for label, genre in enumerate(GENRES) for i in range(songs_per_genre)]
    return TrackList("synthetic", tracks, [g.name for g in GENRES],
                     generated={"songs_per_genre": songs_per_genre, "seconds": seconds, "seed": seed})


def open_tracklist(source: Optional[str], kind: str = "auto", classes: Optional[list] = None,
                   ignore_splits: bool = False) -> TrackList:
    """Describe the dataset at ``source``: ``kind`` is 'gtzan', 'ismir2004', 'folder', 'manifest',
    'synthetic' or 'auto' (synthetic when ``source`` is None, else detected from the layout).

    ``classes`` fixes the class list and its order (:func:`restrict_classes`; for a manifest, an
    unknown label is then an error); ``ignore_splits`` ignores a manifest's split column."""
    if source is None or kind == "synthetic" or source == "synthetic":
        tracklist = synthetic_tracklist()
        return restrict_classes(tracklist, list(classes)) if classes else tracklist
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if kind == "auto":
        if path.is_file():
            kind = "manifest"
        elif (path / "metadata" / "training" / "tracklist.csv").is_file():
            kind = "ismir2004"
        elif all(((path / "genres" / g).is_dir() or (path / g).is_dir()) for g in GTZAN_GENRES):
            kind = "gtzan"
        else:
            kind = "folder"
    readers = {"gtzan": gtzan, "ismir2004": ismir2004, "folder": folder_per_class, "manifest": manifest}
    if kind not in readers:
        raise DataError(f"unknown dataset kind {kind!r}; choose from {sorted(readers)} or synthetic")
    if kind == "manifest":
        return manifest(path, classes, ignore_splits)
    tracklist = readers[kind](path)
    return restrict_classes(tracklist, list(classes)) if classes else tracklist


# ------------------------------------------------------------------------------------ splits
def stratified_folds(labels, folds: int = 10, seed: int = 0) -> np.ndarray:
    """Fold number (0..folds-1) of every item: each class is shuffled with ``seed`` and dealt
    round-robin, so every fold holds each class in proportion (sizes differ by at most one)."""
    labels = np.asarray(labels)
    assignment = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    offset = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)       # continue dealing where the last class stopped: balanced sizes
    return assignment


def resolved_protocol(tracklist: TrackList, protocol: str = "auto") -> str:
    """'auto' becomes 'predefined' when every track has a split, else 'cv'."""
    if protocol == "auto":
        return "predefined" if all(t.split for t in tracklist.tracks) else "cv"
    return protocol


def make_splits(tracklist: TrackList, protocol: str = "auto", fold: int = 0, folds: int = 10,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Train / valid / test indices into ``tracklist.tracks``.

    - 'cv': stratified ``folds``-fold cross-validation; fold ``fold`` is the test set, the next
      fold the validation set (model selection never sees the test fold), the rest train;
    - 'filtered': GTZAN's fault-filtered split; 'predefined': the dataset's own split column
      (ISMIR2004 subsets, a manifest's split); 'auto': predefined when every track has a split,
      else 'cv'.
    """
    protocol = resolved_protocol(tracklist, protocol)
    if protocol == "filtered":
        mapping = gtzan_filtered_splits()
        splits = [mapping.get(t.name) for t in tracklist.tracks]
    elif protocol == "predefined":
        splits = [t.split for t in tracklist.tracks]
        if not all(splits):
            raise DataError("protocol 'predefined' needs a split for every track")
    elif protocol == "cv":
        if not 0 <= fold < folds:
            raise DataError(f"fold must be in [0, {folds}), got {fold}")
        assignment = stratified_folds(tracklist.labels, folds, seed)
        splits = np.where(assignment == fold, "test",
                          np.where(assignment == (fold + 1) % folds, "valid", "train")).tolist()
    else:
        raise DataError(f"unknown protocol {protocol!r}; use cv, filtered, predefined or auto")
    splits = np.array([s or "" for s in splits])
    return {name: np.flatnonzero(splits == name) for name in ("train", "valid", "test")}


# ------------------------------------------------------------------------------------ corpus
def default_cache_dir() -> Path:
    """``$SINCFB_CACHE`` or ``$XDG_CACHE_HOME/sincfb`` or ``~/.cache/sincfb``."""
    if os.environ.get("SINCFB_CACHE"):
        return Path(os.environ["SINCFB_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sincfb"


@dataclass
class Corpus:
    """Decoded audio of a dataset: every usable track as one slice of a flat float32 array."""

    name: str
    classes: list[str]
    names: list[str]
    labels: np.ndarray
    splits: list[Optional[str]]
    audio: np.ndarray                    # flat float32, often a read-only memmap
    offsets: np.ndarray                  # int64, start of each track in ``audio``
    lengths: np.ndarray                  # int64
    sample_rate: int
    failures: list[str] = field(default_factory=list)   # messages of the files skipped

    def __len__(self) -> int:
        return len(self.names)

    def track(self, index: int) -> np.ndarray:
        """The samples of track ``index`` (a view)."""
        start = int(self.offsets[index])
        return self.audio[start:start + int(self.lengths[index])]

    def clips(self, index: int, clip_samples: int, hop_samples: int) -> torch.Tensor:
        """Every clip of track ``index``: (num_clips, 1, clip_samples)."""
        return cut_clips(self.track(index), clip_samples, hop_samples)


def _cache_key(tracklist: TrackList, sample_rate: int) -> str:
    digest = hashlib.sha1(f"v1|{sample_rate}|{tracklist.name}|{tracklist.generated}".encode())
    for track in tracklist.tracks:
        digest.update(f"|{track.name}|{track.label}".encode())
        if track.path is not None:
            stat = track.path.stat() if track.path.exists() else None
            digest.update(f"|{track.path}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _decode_all(tracklist: TrackList, sample_rate: int, progress: bool):
    """Yield ``(track, samples or None, failure message or None)`` for every track."""
    if tracklist.generated:
        from .synthetic import GENRES, synthesize_song

        params = tracklist.generated
        for track in _progress(tracklist.tracks, "synthesising", progress):
            index = int(track.name.rsplit(".", 1)[1])
            rng = np.random.default_rng([params["seed"], track.label, index])
            yield track, synthesize_song(GENRES[track.label], params["seconds"], sample_rate, rng), None
        return
    for track in _progress(tracklist.tracks, "decoding", progress):
        try:
            yield track, load_audio(track.path, sample_rate), None
        except AudioError as error:
            yield track, None, str(error)


def _progress(items, description, enabled):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="track", leave=False)


def load_corpus(tracklist: TrackList, sample_rate: int = 16000, cache_dir=None,
                progress: bool = True, use_cache: bool = True) -> Corpus:
    """Decode (or reuse the cached decode of) every track of ``tracklist``.

    The cache is ``<cache_dir>/<name>-<key>.f32`` (raw float32) with a ``.json`` index, keyed on the
    file list, sizes, modification times and sample rate; both are written to temporary names and
    renamed into place, so an interrupted decode never leaves a corrupt cache. Unusable files are
    skipped, warned about by name, and listed in ``Corpus.failures``.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _cache_key(tracklist, sample_rate)
    stem = cache_dir / f"{tracklist.name}-{key}"
    if use_cache and stem.with_suffix(".json").is_file():
        corpus = _read_cache(stem, tracklist)
        if corpus is not None:
            return corpus
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp_audio = stem.with_suffix(f".f32.tmp{os.getpid()}")
    kept, lengths, failures = [], [], []
    try:
        with open(tmp_audio, "wb") as sink:
            for track, samples, failure in _decode_all(tracklist, sample_rate, progress):
                if failure:
                    warnings.warn(f"skipping {failure}", stacklevel=2)
                    failures.append(failure)
                    continue
                sink.write(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
                kept.append(track)
                lengths.append(len(samples))
        if not kept:
            raise DataError(f"{tracklist.name}: none of the {len(tracklist.tracks)} files could be "
                            f"used; first problem: {failures[0] if failures else 'none'}")
        os.replace(tmp_audio, stem.with_suffix(".f32"))
    finally:
        tmp_audio.unlink(missing_ok=True)
    index = {"names": [t.name for t in kept], "labels": [t.label for t in kept],
             "splits": [t.split for t in kept], "lengths": lengths, "classes": tracklist.classes,
             "sample_rate": sample_rate, "failures": failures}
    tmp_index = stem.with_suffix(f".json.tmp{os.getpid()}")
    tmp_index.write_text(json.dumps(index))
    os.replace(tmp_index, stem.with_suffix(".json"))
    return _read_cache(stem, tracklist)


def _read_cache(stem: Path, tracklist: TrackList) -> Optional[Corpus]:
    try:
        index = json.loads(stem.with_suffix(".json").read_text())
        lengths = np.array(index["lengths"], dtype=np.int64)
        audio = np.memmap(stem.with_suffix(".f32"), dtype=np.float32, mode="r")
    except (OSError, ValueError, KeyError):
        return None                      # unreadable cache: decode again
    if audio.shape[0] != int(lengths.sum()):
        return None
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Corpus(tracklist.name, index["classes"], index["names"],
                  np.array(index["labels"], dtype=np.int64), index["splits"], audio, offsets,
                  lengths, index["sample_rate"], index["failures"])


# ----------------------------------------------------------------------------- clip sampling
class RandomClipDataset(torch.utils.data.Dataset):
    """Training clips: each epoch draws ``clips_per_song`` random hop-aligned clips of every song,
    with the paper's augmentation (gain ``U[1 - gain, 1 + gain]`` and additive noise).

    Every random choice comes from a generator seeded by ``(seed, epoch, item)``, so an epoch's
    clips are the same whatever the number of workers and after a resume. Items are
    ``(clip (1, clip_samples) float32, label int)``.
    """

    def __init__(self, corpus: Corpus, indices, clip_samples: int, hop_samples: int,
                 clips_per_song: int = 4, seed: int = 0, gain: float = 0.1,
                 noise_std: float = 0.02, noise: str = "gaussian"):
        if noise not in ("gaussian", "uniform", "none"):
            raise ValueError(f"noise must be gaussian, uniform or none, got {noise!r}")
        self.corpus, self.indices = corpus, np.asarray(indices, dtype=np.int64)
        self.clip_samples, self.hop_samples = clip_samples, hop_samples
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
        track = self.corpus.track(song)
        starts = clip_starts(len(track), self.clip_samples, self.hop_samples)
        start = starts[int(rng.integers(len(starts)))]
        clip = np.zeros(self.clip_samples, dtype=np.float32)
        piece = track[start:start + self.clip_samples]
        clip[: len(piece)] = piece
        clip *= rng.uniform(1 - self.gain, 1 + self.gain)
        if self.noise == "gaussian":
            clip += rng.normal(0.0, self.noise_std, self.clip_samples).astype(np.float32)
        elif self.noise == "uniform":
            clip += rng.uniform(-self.noise_std, self.noise_std, self.clip_samples).astype(np.float32)
        return torch.from_numpy(clip)[None], int(self.corpus.labels[song])
