"""A CSV manifest: one row ``path,label[,split]`` per song."""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Optional

from ..registry import register_dataset
from ..tracks import (DataError, Track, TrackList, csv_rows, did_you_mean, excerpt, existing_path,
                      listed_once, text_lines)

__all__ = ["manifest"]


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
    csv_path = existing_path(csv_path)
    rows = _manifest_rows(csv_path)
    if not ignore_splits:
        _check_manifest_splits(csv_path, rows)
    known = list(classes) if classes else sorted({label for _, _, label, _ in rows})
    if not classes:
        _warn_similar_labels(csv_path, known)
    tracks, first_rows = [], {}
    for row_number, path, label, split in rows:
        listed_once(first_rows, path.as_posix(), f"{csv_path}:{row_number}")
        if label not in known:
            raise DataError(f"{csv_path}:{row_number}: unknown label {excerpt(label)}"
                            + did_you_mean(label, known) + f"; the classes are {known}")
        name = path.as_posix()
        path = path if path.is_absolute() else csv_path.parent / path
        tracks.append(Track(path, known.index(label), name, None if ignore_splits else split))
    return TrackList(csv_path.stem, tracks, known)


def _manifest_rows(csv_path: Path) -> list[tuple]:
    """``(row number, path, label, split or None)`` of every row of a manifest."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such manifest file")
    rows = []
    for row_number, row in csv_rows(csv_path, text_lines(csv_path, "manifest")):
        if not row or not any(cell.strip() for cell in row) or \
                (row_number == 1 and row[0].strip().lower() == "path"):
            continue
        _check_manifest_cells(csv_path, row_number, row)
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DataError(f"{csv_path}:{row_number}: expected path,label[,split], got "
                            f"{excerpt(','.join(row))}")
        split = row[2].strip().lower() if len(row) > 2 and row[2].strip() else None
        if split not in (None, "train", "valid", "test"):
            raise DataError(f"{csv_path}:{row_number}: split must be train, valid or test, "
                            f"got {excerpt(row[2])}")
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
                            f"{excerpt(cell)}; paths, labels and splits are plain text")


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



def _is_file(path: Optional[Path]) -> bool:
    return path is not None and path.is_file()


@register_dataset("manifest", "a CSV of path,label[,split]", detect=_is_file, rank=10)
def _read(root: Optional[Path], classes: Optional[list], ignore_splits: bool) -> TrackList:
    return manifest(root, classes, ignore_splits)
