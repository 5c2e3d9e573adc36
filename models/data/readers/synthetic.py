"""The embedded synthetic corpus (:mod:`models.data.synthetic`): no files, generated songs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..registry import register_dataset, with_classes
from ..tracks import Track, TrackList

__all__ = ["synthetic_tracklist"]


def synthetic_tracklist(songs_per_genre: int = 24, seconds: float = 6.0, seed: int = 0) -> TrackList:
    """The embedded synthetic corpus (see :mod:`models.data.synthetic`), described without audio."""
    from ..synthetic import GENRES

    tracks = [Track(None, label, f"{genre.name}.{i:05d}")
              for label, genre in enumerate(GENRES) for i in range(songs_per_genre)]
    return TrackList("synthetic", tracks, [g.name for g in GENRES],
                     generated={"songs_per_genre": songs_per_genre, "seconds": seconds, "seed": seed})



def _is_synthetic(path: Optional[Path]) -> bool:
    return path is None or path == Path("synthetic")


@register_dataset("synthetic", "the embedded synthetic corpus (no files)", detect=_is_synthetic,
                  rank=0)
def _read(root: Optional[Path], classes: Optional[list], ignore_splits: bool) -> TrackList:
    return with_classes(synthetic_tracklist(), classes)
