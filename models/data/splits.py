"""Train / valid / test splits of a track list: stratified cross-validation folds, GTZAN's
fault-filtered split, or the dataset's own split column."""
from __future__ import annotations

import numpy as np

from .readers.gtzan import gtzan_filtered_splits
from .tracks import DataError, TrackList

__all__ = ["stratified_folds", "resolved_protocol", "make_splits"]


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
