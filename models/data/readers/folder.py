"""Any folder per class: ``<root>/<class>/<audio files>``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

from ..registry import register_dataset, with_classes
from ..tracks import AUDIO_EXTENSIONS, DataError, Track, TrackList, audio_files, existing_path

__all__ = ["folder_per_class"]


def folder_per_class(root) -> TrackList:
    """Any ``<root>/<class>/<audio files>`` tree; class names are the sorted folder names."""
    root = existing_path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    tracks, classes = [], []
    for folder in class_dirs:
        files = audio_files(folder)
        if not files:
            warnings.warn(f"{folder}: no audio files; class {folder.name!r} ignored", stacklevel=2)
            continue
        classes.append(folder.name)
        tracks.extend(Track(p, len(classes) - 1, f"{folder.name}/{p.name}") for p in files)
    if len(classes) < 2:
        raise DataError(f"{root}: need at least two class folders holding audio files "
                        f"({AUDIO_EXTENSIONS}); found {len(classes)}")
    return TrackList(root.name, tracks, classes)



def _is_folder(path: Optional[Path]) -> bool:
    return path is not None and path.is_dir()


# the last resort of --kind auto: every folder is one
@register_dataset("folder", "any <root>/<class>/<audio files> tree", detect=_is_folder, rank=90)
def _read(root: Optional[Path], classes: Optional[list], ignore_splits: bool) -> TrackList:
    return with_classes(folder_per_class(root), classes)
