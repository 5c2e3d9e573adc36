"""Which dataset a path holds, and its track list: :func:`open_tracklist` asks the registered
readers (:mod:`models.data.readers`) in turn, with no reader named here."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import readers  # noqa: F401  (registers every reader)
from .registry import Dataset, registered_datasets
from .tracks import DataError, TrackList, existing_path

__all__ = ["DATASETS", "KINDS", "dataset", "detect_dataset", "open_tracklist"]

#: kind -> what it reads, for every registered dataset (the command line's ``--kind`` help)
DATASETS = {d.kind: d.text for d in registered_datasets()}

#: What ``--kind`` accepts: 'auto' (detected from the files) or a registered kind.
KINDS = ("auto", *DATASETS)


def dataset(kind: str) -> Dataset:
    """The registered dataset ``kind``; :class:`DataError` naming the known kinds otherwise."""
    for entry in registered_datasets():
        if entry.kind == kind:
            return entry
    raise DataError(f"unknown dataset kind {kind!r}; choose from {list(KINDS)}")


def detect_dataset(path: Optional[Path]) -> Dataset:
    """The first registered dataset (by rank) whose ``detect`` recognises ``path``."""
    for entry in registered_datasets():
        if entry.detect(path):
            return entry
    raise DataError(f"{existing_path(path)}: neither a file nor a folder of a known layout")


def open_tracklist(source: Optional[str], kind: str = "auto", classes: Optional[list] = None,
                   ignore_splits: bool = False) -> TrackList:
    """Describe the dataset at ``source``: ``kind`` is a registered kind (:data:`KINDS`) or
    'auto' (the synthetic corpus when ``source`` is None, else detected from the layout).

    ``classes`` fixes the class list and its order (:func:`restrict_classes`; for a manifest, an
    unknown label is then an error); ``ignore_splits`` ignores a manifest's split column."""
    path = None if source is None else Path(source)
    entry = detect_dataset(path) if kind == "auto" else dataset(kind)
    return entry.read(path, classes, ignore_splits)
