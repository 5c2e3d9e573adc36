"""What a dataset is before decoding: its songs (:class:`Track`), their list (:class:`TrackList`),
the error a dataset that cannot be used raises (:class:`DataError`), and the small helpers every
reader shares (CSV rows, UTF-8 text, quoting file content in a message).

The module imports no numpy or torch, so the command line can list the readers (``--kind``)
without loading them.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["AUDIO_EXTENSIONS", "DataError", "Track", "TrackList", "restrict_classes",
           "existing_path", "audio_files", "names_a_file", "csv_rows",
           "text_lines", "excerpt", "did_you_mean", "listed_once"]

#: The file endings read as audio (the formats libsndfile decodes, and MP3).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif")


class DataError(ValueError):
    """A dataset that cannot be used as given; the message says which file or folder and why."""


def excerpt(text: str, limit: int = 60) -> str:
    """``repr(text)`` cut to about ``limit`` characters: file content quoted in a message stays
    on one line (repr escapes control characters) and short (a field may hold a megabyte)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def csv_rows(path: Path, lines, **dialect):
    """``(line number, cells)`` of ``csv.reader(lines, **dialect)``, a malformed CSV (a field
    over csv's size limit, a NUL byte in strict mode) raised as :class:`DataError` at its line."""
    reader = csv.reader(lines, **dialect)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as error:
        raise DataError(f"{path}:{reader.line_num}: not a readable CSV row ({error})") from None


def text_lines(path: Path, what: str) -> io.StringIO:
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
    #: why some copies of the dataset ship a track broken, by track name: a skip message adds it
    known_faults: dict = field(default_factory=dict)

    def __post_init__(self):
        counts = collections.Counter(track.name for track in self.tracks)
        repeated = [name for name, count in counts.items() if count > 1]
        if repeated:
            raise DataError(f"{self.name}: {len(repeated)} track name(s) occur twice (first: "
                            f"{excerpt(repeated[0])}); tracks are matched by name, so names "
                            "must be unique")

    @property
    def labels(self):
        """The class index of every track (an int64 array)."""
        import numpy as np     # here, so that listing the readers loads no numpy

        return np.array([t.label for t in self.tracks], dtype=np.int64)

    def restricted_to(self, names) -> "TrackList":
        """The tracks named ``names`` (e.g. those of a decoded :class:`Corpus`), in that order."""
        by_name = {t.name: t for t in self.tracks}
        return dataclasses.replace(self, tracks=[by_name[n] for n in names])


def audio_files(folder: Path) -> list[Path]:
    """The audio files (:data:`AUDIO_EXTENSIONS`) directly in ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def names_a_file(path: Path, folder: bool = False) -> bool:
    """Whether ``path`` is an existing file (``folder``: folder); False, not an error, for a
    name the system refuses (longer than its limit, a NUL byte), which a damaged list can hold."""
    try:
        return path.is_dir() if folder else path.is_file()
    except (OSError, ValueError):
        return False


def did_you_mean(label: str, known) -> str:
    import difflib

    close = difflib.get_close_matches(label, known, n=1) or \
        [k for k in known if k.lower() == label.lower()]
    return f" (did you mean {excerpt(close[0])}?)" if close else ""


def restrict_classes(tracklist: TrackList, classes: list[str]) -> TrackList:
    """The same songs with the class list fixed to ``classes`` (in that order): a class the
    dataset has that is not listed is an error, as is a listed class without songs."""
    extra = [c for c in tracklist.classes if c not in classes]
    if extra:
        raise DataError(f"{tracklist.name}: class(es) {extra} are not in --classes {classes}"
                        + did_you_mean(extra[0], classes) + "; --classes must list every class "
                        "of the dataset, in the model's output order")
    present = {tracklist.classes[t.label] for t in tracklist.tracks}
    empty = [c for c in classes if c not in present]
    if empty:
        raise DataError(f"{tracklist.name}: no songs of class(es) {empty} given in --classes")
    tracks = [dataclasses.replace(t, label=classes.index(tracklist.classes[t.label]))
              for t in tracklist.tracks]
    return dataclasses.replace(tracklist, tracks=tracks, classes=list(classes))


def existing_path(root) -> Path:
    """``root`` as a path; :class:`DataError` when it is None or names nothing."""
    if root is None:
        raise DataError("no dataset given: name its file or folder")
    path = Path(root)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return path


def listed_once(first_rows: dict, key: str, where: str) -> None:
    """:class:`DataError` at ``where`` (file:line) when ``key`` was listed before."""
    first = first_rows.setdefault(key, where)
    if first != where:
        raise DataError(f"{where}: {excerpt(key)} is listed again (first on line "
                        f"{first.rsplit(':', 1)[1]}); each song may be listed once")
