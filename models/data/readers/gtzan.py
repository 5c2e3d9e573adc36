"""GTZAN (Tzanetakis and Cook, 2002): ``genres/<genre>/<genre>.000NN.wav`` or ``.au``, and its
fault-filtered split as torchaudio ships it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..registry import register_dataset, with_classes
from ..tracks import DataError, Track, TrackList, audio_files, existing_path

__all__ = ["GTZAN_GENRES", "GTZAN_KNOWN_FAULTS", "gtzan", "gtzan_filtered_splits"]

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
                "reggae", "rock")
# Tracks that some public copies of GTZAN ship broken. They are used when they decode; when they
# do not, the skip message explains (the file is in the fault-filtered training list).
GTZAN_KNOWN_FAULTS = {
    "jazz.00054": "a known fault of some GTZAN copies (the Kaggle .wav does not start with RIFF); "
                  "the fault-filtered training split then has 442 songs instead of 443",
}


def gtzan(root) -> TrackList:
    """GTZAN: ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``); ``root`` may be the folder above
    ``genres`` or ``genres`` itself. Every file is listed, ``jazz.00054`` included: it is skipped
    at decoding only if it does not decode (see ``GTZAN_KNOWN_FAULTS``)."""
    root = existing_path(root)
    genres_dir = root / "genres" if (root / "genres").is_dir() else root
    tracks = []
    for label, genre in enumerate(GTZAN_GENRES):
        folder = genres_dir / genre
        if not folder.is_dir():
            raise DataError(f"{folder}: GTZAN genre folder missing")
        tracks.extend(Track(path, label, path.stem) for path in audio_files(folder))
    if not tracks:
        raise DataError(f"{genres_dir}: no GTZAN audio files found")
    return TrackList("gtzan", tracks, list(GTZAN_GENRES), known_faults=dict(GTZAN_KNOWN_FAULTS))


def gtzan_filtered_splits() -> dict[str, str]:
    """The fault-filtered GTZAN split (443 train / 197 valid / 290 test) as torchaudio ships it."""
    from torchaudio.datasets import gtzan as torchaudio_gtzan

    split = {name: "train" for name in torchaudio_gtzan.filtered_train}
    split.update({name: "valid" for name in torchaudio_gtzan.filtered_valid})
    split.update({name: "test" for name in torchaudio_gtzan.filtered_test})
    return split



def _looks_like_gtzan(path: Optional[Path]) -> bool:
    return path is not None and all(((path / "genres" / g).is_dir() or (path / g).is_dir())
                                    for g in GTZAN_GENRES)


@register_dataset("gtzan", "GTZAN: genres/<genre>/<genre>.000NN.wav or .au",
                  detect=_looks_like_gtzan, rank=30)
def _read(root: Optional[Path], classes: Optional[list], ignore_splits: bool) -> TrackList:
    return with_classes(gtzan(root), classes)
