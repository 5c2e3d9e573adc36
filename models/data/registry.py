"""The dataset registry: every layout ``mssincresnet`` reads, registered where its reader is.

A module of :mod:`models.data.readers` registers its reader with :func:`register_dataset`: the
kind ``--kind`` takes, a line saying what it reads, ``detect(path)`` (whether ``--kind auto``
picks it for ``path``; ``path`` is None when no dataset is given) and ``read(root, classes,
ignore_splits)``. :mod:`models.data.tracklists` loads every module of that folder, so adding a
dataset is one new module there, its tests and the README's table.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .tracks import TrackList, restrict_classes

__all__ = ["Dataset", "register_dataset", "registered_datasets", "with_classes"]


@dataclass(frozen=True)
class Dataset:
    """One registered layout: ``read(root, classes, ignore_splits)`` describes the dataset at
    ``root`` with ``classes`` (or None) as its class list; ``rank`` orders detection."""

    kind: str
    text: str
    detect: Callable[[Optional[Path]], bool]
    read: Callable[[Optional[Path], Optional[list], bool], TrackList]
    #: ``--kind auto`` asks the readers in increasing rank: the most specific layout first, the
    #: any-folder layout, which every folder matches, last
    rank: int


_DATASETS: dict[str, Dataset] = {}


def register_dataset(kind: str, text: str, detect: Callable[[Optional[Path]], bool], rank: int):
    """Decorator registering ``read(root, classes, ignore_splits)`` as the reader of ``kind``."""
    def register(read: Callable) -> Callable:
        if kind in _DATASETS:
            raise ValueError(f"dataset kind {kind!r} is registered twice")
        _DATASETS[kind] = Dataset(kind, text, detect, read, rank)
        return read
    return register


def registered_datasets() -> list[Dataset]:
    """The datasets registered so far, in detection order (rank, then kind)."""
    return sorted(_DATASETS.values(), key=lambda d: (d.rank, d.kind))


def with_classes(tracklist: TrackList, classes: Optional[list]) -> TrackList:
    """``tracklist`` with its class list fixed to ``classes`` (:func:`restrict_classes`), or as it
    is when no classes are given: what a reader whose files carry no class list returns."""
    return restrict_classes(tracklist, list(classes)) if classes else tracklist
