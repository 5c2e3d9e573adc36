"""Music datasets for genre classification: discovery, splits, a decoded-audio cache, clip sampling.

A dataset is first described as a :class:`TrackList` (files, labels, optional predefined splits),
from GTZAN, ISMIR2004, a folder per class, a CSV manifest or the embedded synthetic corpus. It is
then decoded once — mono, resampled — into a :class:`Corpus` whose audio lives in one memory-mapped
file per dataset (16-bit with a per-track step for real recordings, float32 for generated audio),
so epochs read clips without decoding anything. Files that cannot be used are skipped with a
message naming them and counted.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .audio import AUDIO_EXTENSIONS, AudioError, Framing, fft_resample, read_mono, resample
from .datasets import reader
from .fileio import atomic_open, atomic_write_bytes

__all__ = ["DataError", "Track", "TrackList", "Corpus", "GTZAN_GENRES", "ISMIR2004_CLASSES",
           "ISMIR2004_GENRES", "gtzan", "ismir2004", "ismir2004_class", "folder_per_class",
           "manifest", "synthetic_tracklist", "open_tracklist", "restrict_classes",
           "stratified_folds", "resolved_protocol", "make_splits", "load_corpus",
           "RandomClipDataset", "default_cache_dir", "STORAGES"]

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
                "reggae", "rock")
# Tracks that some public copies of GTZAN ship broken. They are used when they decode; when they
# do not, the skip message explains (the file is in the fault-filtered training list).
GTZAN_KNOWN_FAULTS = {
    "jazz.00054": "a known fault of some GTZAN copies (the Kaggle .wav does not start with RIFF); "
                  "the fault-filtered training split then has 442 songs instead of 443",
}
ISMIR2004_CLASSES = ("classical", "electronic", "jazz_blues", "metal_punk", "rock_pop", "world")
ISMIR2004_SUBSETS = {"training": "train", "development": "valid", "evaluation": "test"}
# The release's audio folders use the 8 original Magnatune genres; the contest merged them into
# the 6 classes (README.txt of the release; jazz and blues share the 'jazz' folder).
ISMIR2004_GENRES = {"classical": "classical", "electronic": "electronic", "jazz": "jazz_blues",
                    "blues": "jazz_blues", "metal": "metal_punk", "punk": "metal_punk",
                    "rock": "rock_pop", "pop": "rock_pop", "world": "world"}
STORAGES = ("auto", "float32", "int16")


class DataError(ValueError):
    """A dataset that cannot be used as given; the message says which file or folder and why."""


def _excerpt(text: str, limit: int = 60) -> str:
    """``repr(text)`` cut to about ``limit`` characters: file content quoted in a message stays
    on one line (repr escapes control characters) and short (a field may hold a megabyte)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _csv_rows(path: Path, lines, **dialect):
    """``(line number, cells)`` of ``csv.reader(lines, **dialect)``, a malformed CSV (a field
    over csv's size limit, a NUL byte in strict mode) raised as :class:`DataError` at its line."""
    reader = csv.reader(lines, **dialect)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not a readable CSV row ({error})") from None


def _text_lines(path: Path, what: str) -> io.StringIO:
    """A UTF-8 text file (a byte-order mark allowed) as lines for csv, split only at its line
    ends (as ``open(newline="")`` does); :class:`DataError` naming the file when it is not
    UTF-8 text."""
    try:
        return io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: the {what} is not UTF-8 text (byte "
                        f"0x{error.object[error.start]:02x} at offset {error.start}); save it as "
                        "UTF-8") from None


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
                            f"{_excerpt(repeated[0])}); tracks are matched by name, so names "
                            "must be unique")

    @property
    def labels(self) -> np.ndarray:
        """The class index of every track."""
        return np.array([t.label for t in self.tracks], dtype=np.int64)

    def restricted_to(self, names) -> "TrackList":
        """The tracks named ``names`` (e.g. those of a decoded :class:`Corpus`), in that order."""
        by_name = {t.name: t for t in self.tracks}
        return TrackList(self.name, [by_name[n] for n in names], self.classes, self.generated)


# --------------------------------------------------------------------------------- discovery
def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def gtzan(root) -> TrackList:
    """GTZAN: ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``); ``root`` may be the folder above
    ``genres`` or ``genres`` itself. Every file is listed, ``jazz.00054`` included: it is skipped
    at decoding only if it does not decode (see ``GTZAN_KNOWN_FAULTS``)."""
    root = Path(root)
    genres_dir = root / "genres" if (root / "genres").is_dir() else root
    tracks = []
    for label, genre in enumerate(GTZAN_GENRES):
        folder = genres_dir / genre
        if not folder.is_dir():
            raise DataError(f"{folder}: GTZAN genre folder missing")
        tracks.extend(Track(path, label, path.stem) for path in _audio_files(folder))
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


def ismir2004_class(raw: str) -> Optional[str]:
    """The contest class of a class or genre name as the release writes them ('jazz_blues',
    'jazz-blues', 'jazz & blues', 'punk', 'Pop' ...), or None when it is neither."""
    key = re.sub(r"[\s&/\-]+", "_", raw.strip().lower()).strip("_")
    key = re.sub("_+", "_", key)
    return key if key in ISMIR2004_CLASSES else ISMIR2004_GENRES.get(key)


def ismir2004(root, subsets: Optional[dict] = None) -> TrackList:
    """ISMIR 2004 genre, as released by MTG-UPF (Zenodo record 1302992).

    Reads ``metadata/<subset>/tracklist.csv`` for the subsets training, development and
    evaluation (``subsets`` maps them to splits; default train / valid / test). Each row is
    ``class, artist, album, track, track number, file path`` (evaluation adds the Magnatune id),
    every field quoted, no header (one is tolerated). Paths are relative to ``audio/<subset>/``
    (absolute ones are accepted); the release's few path mismatches (an apostrophe that is an
    underscore on disk, one name with a U+FFFD and an unpadded track number) are found anyway.
    A class is taken from ``metadata/development/ground_truth.csv`` when that file exists and
    names the track, else from the row's class column, else from the original-genre folder that
    starts the path; original genres map to the 6 classes (jazz -> jazz_blues, metal and punk ->
    metal_punk, rock and pop -> rock_pop). Missing audio files are skipped with a warning.
    """
    root = Path(root)
    subsets = dict(ISMIR2004_SUBSETS if subsets is None else subsets)
    tracks = []
    for subset, split in subsets.items():
        listing = root / "metadata" / subset / "tracklist.csv"
        if not listing.is_file():
            if subset == "training":
                raise DataError(f"{listing}: ISMIR2004 track list missing; expected the release's "
                                "metadata/ and audio/ folders under this root")
            warnings.warn(f"{listing}: missing; the {split} split stays empty", stacklevel=2)
            continue
        tracks.extend(_ismir_subset(root, subset, split, listing))
    if not tracks:
        raise DataError(f"{root}: no ISMIR2004 audio files found")
    return TrackList("ismir2004", tracks, list(ISMIR2004_CLASSES))


def _ismir_subset(root: Path, subset: str, split: str, listing: Path) -> list[Track]:
    rows = _ismir_rows(listing)
    truth_file = listing.with_name("ground_truth.csv")
    truth = _read_ground_truth(truth_file, {_file_key(r[5]) for _, r in rows}) \
        if truth_file.is_file() else {}
    tracks, overruled, first_rows = [], 0, {}
    for row_number, row in rows:
        where = f"{listing}:{row_number}"
        _listed_once(first_rows, row[5], where)
        label = truth.get(_file_key(row[5])) or _row_class(row, where)
        overruled += bool(row[0]) and ismir2004_class(row[0]) not in (None, label)
        path = _ismir_audio(root, subset, row[5])
        if path is None:
            warnings.warn(f"{where}: audio file {_excerpt(row[5])} not found; skipped",
                          stacklevel=3)
            continue
        tracks.append(Track(path, ISMIR2004_CLASSES.index(label), f"{subset}/{row[5]}", split))
    if overruled:
        warnings.warn(f"{truth_file}: its class differs from the track list's for {overruled} "
                      "tracks; the ground truth is used", stacklevel=3)
    return tracks


def _ismir_rows(listing: Path) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a tracklist.csv, header and blank lines left out."""
    # The one non-ASCII byte sequence of the release is a U+FFFD already; decode leniently anyway.
    with open(listing, newline="", encoding="utf-8", errors="replace") as handle:
        rows = [(n, [cell.strip() for cell in row]) for n, row in _csv_rows(listing, handle)
                if any(cell.strip() for cell in row)]
    if rows and rows[0][1][0].lower() == "class":
        rows = rows[1:]
    for row_number, row in rows:
        if len(row) < 6:
            raise DataError(f"{listing}:{row_number}: expected 6 columns (class, artist, album, "
                            f"track, track number, file path; 7 with the evaluation set's track "
                            f"id), got {len(row)}")
    return rows


def _listed_once(first_rows: dict, key: str, where: str) -> None:
    """:class:`DataError` at ``where`` (file:line) when ``key`` was listed before."""
    first = first_rows.setdefault(key, where)
    if first != where:
        raise DataError(f"{where}: {_excerpt(key)} is listed again (first on line "
                        f"{first.rsplit(':', 1)[1]}); each song may be listed once")


def _row_class(row: list[str], where: str) -> str:
    """The class of a tracklist row: its class column, else its path's genre folder."""
    if row[0]:
        label = ismir2004_class(row[0])
        if label is None:
            raise DataError(f"{where}: unknown class {_excerpt(row[0])}; expected one of "
                            f"{list(ISMIR2004_CLASSES)} or an original genre {sorted(ISMIR2004_GENRES)}")
        return label
    folder = row[5].replace("\\", "/").split("/")[0]
    label = ismir2004_class(folder) if "/" in row[5].replace("\\", "/") else None
    if label is None:
        raise DataError(f"{where}: the row has no class; for the development set put the "
                        "release's metadata/development/ground_truth.csv beside tracklist.csv")
    return label


def _file_key(text: str) -> str:
    """How a track is matched between files: its file name without folders and extension."""
    name = text.strip().replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name[: -len(Path(name).suffix)] if Path(name).suffix in AUDIO_EXTENSIONS else name


def _read_ground_truth(path: Path, known: set[str]) -> dict[str, str]:
    """``{file key: class}`` from the release's ``ground_truth.csv``.

    No copy of that file's layout was found, so any is accepted in which a row holds one field
    naming the audio file (with or without folders and extension) and one field holding a class
    or genre name, separated by commas, semicolons, tabs or spaces; other rows (a header) are
    skipped.
    """
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.strip()]
    delimiter = max((",", ";", "\t"), key=lambda d: sum(d in line for line in lines))
    if not any(delimiter in line for line in lines):
        delimiter = " "
    labels = {}
    for _, row in _csv_rows(path, lines, delimiter=delimiter, skipinitialspace=True):
        cells = [cell.strip() for cell in row if cell.strip()]
        files = [c for c in cells if _file_key(c) in known or Path(c).suffix.lower() in AUDIO_EXTENSIONS]
        classes = [ismir2004_class(c) for c in cells if c not in files and ismir2004_class(c)]
        if files and classes:
            labels[_file_key(files[0])] = classes[0]
    if not labels:
        raise DataError(f"{path}: no row names both an audio file and a class; expected rows such "
                        "as 'artist_1_album_1_track_1.mp3,classical' (any column order)")
    return labels


def _ismir_audio(root: Path, subset: str, raw: str) -> Optional[Path]:
    """The audio file a tracklist path names, relative to ``audio/<subset>/`` or absolute."""
    text = raw.replace("\\", "/")
    if Path(text).is_absolute():
        if _names_a_file(Path(text)):
            return Path(text)
        marker = f"/audio/{subset}/"        # an absolute path from another machine: re-root it
        if marker not in text:
            return None
        text = text.split(marker, 1)[1]
    for base in (root / "audio" / subset, root / "audio", root):
        found = _release_file(base, text)
        if found is not None:
            return found
    return None


def _release_file(base: Path, relative: str) -> Optional[Path]:
    """``base / relative``, allowing for the release's path mismatches: an apostrophe that is an
    underscore on disk (two training rows), or a name whose U+FFFD stands for a letter and whose
    track number is zero-padded on disk (one evaluation row: '5-kruhov\\ufffd_objazd.mp3' is
    '05-kruhovy_objazd.mp3')."""
    for candidate in (relative, relative.replace("'", "_")):
        if _names_a_file(base / candidate):
            return base / candidate
    parent, _, name = relative.rpartition("/")
    folders = [base / p for p in dict.fromkeys((parent, parent.replace("'", "_")))
               if _names_a_file(base / p, folder=True)]
    if not folders:
        return None
    number, rest = re.match(r"(\d*)(.*)", name).groups()
    # the number as digits, not int(): a row may hold more digits than int() converts
    pattern = (f"0*{number.lstrip('0') or '0'}" if number else "") + "".join(
        "." if ch == "\ufffd" else "['_]" if ch in "'_" else re.escape(ch) for ch in rest)
    matches = [p for p in folders[0].iterdir() if p.is_file() and re.fullmatch(pattern, p.name, re.I)]
    return matches[0] if len(matches) == 1 else None


def _names_a_file(path: Path, folder: bool = False) -> bool:
    """Whether ``path`` is an existing file (``folder``: folder); False, not an error, for a
    name the system refuses (longer than its limit, a NUL byte), which a damaged list can hold."""
    try:
        return path.is_dir() if folder else path.is_file()
    except (OSError, ValueError):
        return False


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
    tracks, first_rows = [], {}
    for row_number, path, label, split in rows:
        _listed_once(first_rows, path.as_posix(), f"{csv_path}:{row_number}")
        if label not in known:
            raise DataError(f"{csv_path}:{row_number}: unknown label {_excerpt(label)}"
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
    for row_number, row in _csv_rows(csv_path, _text_lines(csv_path, "manifest")):
        if not row or not any(cell.strip() for cell in row) or \
                (row_number == 1 and row[0].strip().lower() == "path"):
            continue
        _check_manifest_cells(csv_path, row_number, row)
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{csv_path}:{row_number}: expected path,label[,split], got "
                            f"{_excerpt(','.join(row))}")
        split = row[2].strip().lower() if len(row) > 2 and row[2].strip() else None
        if split not in (None, "train", "valid", "test"):
            raise DataError(f"{csv_path}:{row_number}: split must be train, valid or test, "
                            f"got {_excerpt(row[2])}")
        rows.append((row_number, Path(row[0].strip()), row[1].strip(), split))
    if not rows:
        raise DataError(f"{csv_path}: the manifest lists no tracks")
    return rows


# A path or label in a manifest holds no control character (a NUL, a newline inside quotes, an
# escape sequence): such a cell is damage, not a name, and would garble every message naming it.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _check_manifest_cells(csv_path: Path, row_number: int, row: list[str]) -> None:
    for cell in row[:3]:
        if _CONTROL.search(cell):
            raise DataError(f"{csv_path}:{row_number}: a control character in the field "
                            f"{_excerpt(cell)}; paths, labels and splits are plain text")


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
    return f" (did you mean {_excerpt(close[0])}?)" if close else ""


def restrict_classes(tracklist: TrackList, classes: list[str]) -> TrackList:
    """The same songs with the class list fixed to ``classes`` (in that order): a class the
    dataset has that is not listed is an error, as is a listed class without songs."""
    extra = [c for c in tracklist.classes if c not in classes]
    if extra:
        raise DataError(f"{tracklist.name}: class(es) {extra} are not in --classes {classes}"
                        + _did_you_mean(extra[0], classes) + "; --classes must list every class "
                        "of the dataset, in the model's output order")
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
    try:
        read = reader(kind)
    except ValueError as error:
        raise DataError(str(error)) from None
    if kind == "manifest":
        return manifest(path, classes, ignore_splits)
    tracklist = read(path)
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
                seed: int = 0, validation: bool = True) -> dict[str, np.ndarray]:
    """Train / valid / test indices into ``tracklist.tracks``.

    - 'cv': stratified ``folds``-fold cross-validation; fold ``fold`` is the test set, the next
      fold the validation set (model selection never sees the test fold), the rest train;
      ``validation=False`` trains on every other fold (the authors' main.py, which has no
      validation split);
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
        valid_fold = (fold + 1) % folds if validation else -1
        splits = np.where(assignment == fold, "test",
                          np.where(assignment == valid_fold, "valid", "train")).tolist()
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
            stat = track.path.stat() if _names_a_file(track.path) else None
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
            known = GTZAN_KNOWN_FAULTS.get(track.name) if tracklist.name == "gtzan" else None
            yield track, None, f"{error}; {known}" if known else str(error), 1.0
            continue
        if fixed_samples is None:
            yield track, resample(mono, rate, sample_rate), None, 1.0
        else:
            yield track, fft_resample(mono, fixed_samples), None, \
                len(mono) / rate / (fixed_samples / sample_rate)


def _progress(items, description, enabled):
    from .progress import progress_bar

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


# ----------------------------------------------------------------------------- clip sampling
class RandomClipDataset(torch.utils.data.Dataset):
    """Training clips: each epoch draws ``clips_per_song`` random clips of every song (with
    replacement), with the paper's augmentation (gain ``U[1 - gain, 1 + gain]`` and additive
    noise, both applied after ``scale``).

    ``lookback_samples`` and ``scale`` choose the clip layout and sample scale (see
    :class:`models.audio.Framing`; None and 1.0: the paper's). Every random choice comes from a
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
