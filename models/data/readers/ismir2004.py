"""The ISMIR 2004 genre contest's release (MTG-UPF, Zenodo record 1302992): ``audio/`` and
``metadata/<subset>/tracklist.csv``, with the contest's own train / valid / test subsets."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Optional

from ..registry import register_dataset, with_classes
from ..tracks import (AUDIO_EXTENSIONS, DataError, Track, TrackList, csv_rows, excerpt,
                      existing_path, listed_once, names_a_file)

__all__ = ["ISMIR2004_CLASSES", "ISMIR2004_GENRES", "ISMIR2004_SUBSETS", "ismir2004",
           "ismir2004_class"]

ISMIR2004_CLASSES = ("classical", "electronic", "jazz_blues", "metal_punk", "rock_pop", "world")
ISMIR2004_SUBSETS = {"training": "train", "development": "valid", "evaluation": "test"}
# The release's audio folders use the 8 original Magnatune genres; the contest merged them into
# the 6 classes (README.txt of the release; jazz and blues share the 'jazz' folder).
ISMIR2004_GENRES = {"classical": "classical", "electronic": "electronic", "jazz": "jazz_blues",
                    "blues": "jazz_blues", "metal": "metal_punk", "punk": "metal_punk",
                    "rock": "rock_pop", "pop": "rock_pop", "world": "world"}


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
    root = existing_path(root)
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
        listed_once(first_rows, row[5], where)
        label = truth.get(_file_key(row[5])) or _row_class(row, where)
        overruled += bool(row[0]) and ismir2004_class(row[0]) not in (None, label)
        path = _ismir_audio(root, subset, row[5])
        if path is None:
            warnings.warn(f"{where}: audio file {excerpt(row[5])} not found; skipped",
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
        rows = [(n, [cell.strip() for cell in row]) for n, row in csv_rows(listing, handle)
                if any(cell.strip() for cell in row)]
    if rows and rows[0][1][0].lower() == "class":
        rows = rows[1:]
    for row_number, row in rows:
        if len(row) < 6:
            raise DataError(f"{listing}:{row_number}: expected 6 columns (class, artist, album, "
                            f"track, track number, file path; 7 with the evaluation set's track "
                            f"id), got {len(row)}")
    return rows


def _row_class(row: list[str], where: str) -> str:
    """The class of a tracklist row: its class column, else its path's genre folder."""
    if row[0]:
        label = ismir2004_class(row[0])
        if label is None:
            raise DataError(f"{where}: unknown class {excerpt(row[0])}; expected one of "
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
    for _, row in csv_rows(path, lines, delimiter=delimiter, skipinitialspace=True):
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
        if names_a_file(Path(text)):
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
        if names_a_file(base / candidate):
            return base / candidate
    parent, _, name = relative.rpartition("/")
    folders = [base / p for p in dict.fromkeys((parent, parent.replace("'", "_")))
               if names_a_file(base / p, folder=True)]
    if not folders:
        return None
    number, rest = re.match(r"(\d*)(.*)", name).groups()
    # the number as digits, not int(): a row may hold more digits than int() converts
    pattern = (f"0*{number.lstrip('0') or '0'}" if number else "") + "".join(
        "." if ch == "\ufffd" else "['_]" if ch in "'_" else re.escape(ch) for ch in rest)
    matches = [p for p in folders[0].iterdir() if p.is_file() and re.fullmatch(pattern, p.name, re.I)]
    return matches[0] if len(matches) == 1 else None



def _looks_like_ismir2004(path: Optional[Path]) -> bool:
    return path is not None and (path / "metadata" / "training" / "tracklist.csv").is_file()


@register_dataset("ismir2004", "the ISMIR 2004 genre release: audio/ and metadata/<subset>/",
                  detect=_looks_like_ismir2004, rank=20)
def _read(root: Optional[Path], classes: Optional[list], ignore_splits: bool) -> TrackList:
    return with_classes(ismir2004(root), classes)
