"""The dataset registry: every layout ``mssincresnet`` reads, by the name ``--kind`` takes.

One table drives both the command line's ``--kind`` choices and :func:`models.data.open_tracklist`.
Readers are named, not imported, so the command line can list them without loading numpy or
torch; adding a dataset is one reader function in :mod:`models.data` and one row here.
"""
from __future__ import annotations

import importlib
from typing import Callable

__all__ = ["DATASETS", "KINDS", "reader"]

#: kind -> (reader in models.data, what it reads). 'synthetic' needs no files.
DATASETS = {
    "gtzan": ("gtzan", "GTZAN: genres/<genre>/<genre>.000NN.wav or .au"),
    "ismir2004": ("ismir2004", "the ISMIR 2004 genre release: audio/ and metadata/<subset>/"),
    "folder": ("folder_per_class", "any <root>/<class>/<audio files> tree"),
    "manifest": ("manifest", "a CSV of path,label[,split]"),
    "synthetic": ("synthetic_tracklist", "the embedded synthetic corpus (no files)"),
}

#: What ``--kind`` accepts: 'auto' (detected from the files) or a registered kind.
KINDS = ("auto", *DATASETS)


def reader(kind: str) -> Callable:
    """The reader function of ``kind``; ``ValueError`` naming the known kinds otherwise."""
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose from {list(KINDS)}")
    return getattr(importlib.import_module(".data", __package__), DATASETS[kind][0])
