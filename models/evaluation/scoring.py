"""Song-level evaluation: classify every clip of a song, vote, and score the votes.

The paper's protocol (DESIGN.md §1): cut each song into clips with a fixed hop, classify every clip
and take the majority vote ('mean' averages the clip probabilities instead). Metrics: clip and song
accuracy, confusion matrix, per-class precision / recall / F1, and mean ± std over folds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..base.runtime import autocast
from ..data.audio import Framing
from .results import vote

__all__ = ["SongPrediction", "classify_clips", "vote", "predict_songs", "score", "aggregate_folds"]


@dataclass
class SongPrediction:
    """The decision for one song and the evidence behind it."""

    name: str
    label: int                    # the true class (-1 when unknown)
    predicted: int
    vote_shares: np.ndarray       # fraction of clips that voted for each class
    mean_probabilities: np.ndarray
    clip_predictions: np.ndarray  # argmax of every clip

    def as_dict(self, classes) -> dict:
        """JSON-friendly view with class names."""
        return {"name": self.name, "label": classes[self.label] if self.label >= 0 else None,
                "predicted": classes[self.predicted],
                "vote_share": round(float(self.vote_shares[self.predicted]), 4),
                "mean_probability": round(float(self.mean_probabilities[self.predicted]), 4),
                "vote_shares": {c: round(float(s), 4) for c, s in zip(classes, self.vote_shares)},
                "clips": int(len(self.clip_predictions))}


@torch.no_grad()
def classify_clips(model, clips: torch.Tensor, batch_size: int = 32, device=None,
                   amp: bool = False) -> torch.Tensor:
    """Class probabilities (num_clips, C) of (num_clips, 1, samples) clips, in eval mode."""
    device = torch.device(device) if device else next(model.parameters()).device
    model.eval()
    outputs = []
    for start in range(0, clips.shape[0], batch_size):
        batch = clips[start:start + batch_size].to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(batch)
        outputs.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(outputs)


def predict_songs(model, corpus, indices, framing: Framing, batch_size: int = 32, device=None,
                  amp: bool = False, method: str = "majority", progress: bool = False,
                  tie_break: str = "probability",
                  description: str = "evaluating") -> list[SongPrediction]:
    """Classify every clip (``framing``) of each song ``indices`` of ``corpus``; vote per song.
    ``progress``: a bar named ``description`` on stderr, when it is a terminal."""
    from ..base.progress import progress_bar

    results = []
    for index in progress_bar(indices, description, "song", progress):
        probabilities = classify_clips(model, corpus.framed_clips(int(index), framing),
                                       batch_size, device, amp)
        winner, _, shares, mean = vote(probabilities, method, tie_break)
        results.append(SongPrediction(corpus.names[int(index)], int(corpus.labels[int(index)]),
                                      winner, shares, mean,
                                      probabilities.argmax(1).numpy()))
    return results


def score(predictions: list[SongPrediction], classes: list[str]) -> dict:
    """Clip and song accuracy, confusion matrix (rows = truth) and per-class P/R/F1."""
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    clip_hits = clip_total = 0
    for song in predictions:
        confusion[song.label, song.predicted] += 1
        clip_hits += int((song.clip_predictions == song.label).sum())
        clip_total += len(song.clip_predictions)
    per_class = {}
    for k, name in enumerate(classes):
        tp = confusion[k, k]
        precision = tp / confusion[:, k].sum() if confusion[:, k].sum() else 0.0
        recall = tp / confusion[k].sum() if confusion[k].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[k].sum())}
    songs = max(1, len(predictions))
    return {"song_accuracy": float(np.trace(confusion) / songs),
            "clip_accuracy": float(clip_hits / max(1, clip_total)),
            "songs": len(predictions), "clips": clip_total,
            "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
            "per_class": per_class, "confusion": confusion.tolist(),
            "confusion_axes": "rows: true class, columns: predicted class (song counts)",
            "classes": list(classes)}


def aggregate_folds(fold_scores: list[dict]) -> dict:
    """Mean and standard deviation over cross-validation folds of the headline metrics."""
    summary = {"folds": len(fold_scores)}
    for key in ("song_accuracy", "clip_accuracy", "macro_f1"):
        values = np.array([s[key] for s in fold_scores], dtype=np.float64)
        summary[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=0)),
                        "per_fold": values.tolist()}
    return summary
