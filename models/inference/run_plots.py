"""Figures of a training run, written as PNG files: the training curves (the paper's Fig. 5), the
song-level confusion matrix of an evaluation, and :func:`write_run_figures`, which draws a run
folder's curves.png and filterbank.png."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from sincfb import sinc_layers

from .plots import as_model, new_figure, plot_filterbank, save_figure

__all__ = ["plot_training_curves", "plot_confusion", "write_run_figures", "MAX_CONFUSION_CLASSES"]


def _read_log(log) -> list[dict]:
    """Rows of a run's log.csv (``log`` may be the file or the run folder)."""
    from ..base.logs import read_log_csv

    log = Path(log)
    if log.is_dir():
        log = log / "log.csv"
    if not log.is_file():
        raise FileNotFoundError(f"{log}: no training log (log.csv) here")
    rows = read_log_csv(log)
    if not rows:
        raise ValueError(f"{log}: the log has no epochs yet")
    return rows


def _series(rows: list[dict], key: str) -> Optional[np.ndarray]:
    values = np.array([r.get(key, np.nan) for r in rows], dtype=np.float64)
    return None if np.isnan(values).all() else values


def plot_training_curves(log_csv_path, path) -> Path:
    """Draw training loss, accuracies and the learning rate per epoch from a run's ``log.csv``
    (or its folder), as the paper's Fig. 5. Returns the PNG path."""
    from matplotlib.ticker import MaxNLocator

    rows = _read_log(log_csv_path)
    epochs = np.array([r["epoch"] for r in rows])
    style = {"marker": "o", "markersize": 4} if len(rows) <= 40 else {}
    figure = new_figure("curves")
    loss_ax, acc_ax, lr_ax = figure.subplots(1, 3)
    loss = _series(rows, "train_loss")
    if loss is not None:              # a log from elsewhere may lack a column: draw what it has
        loss_ax.plot(epochs, loss, color="tab:red", label="training", **style)
    loss_ax.set(title="loss", ylabel="cross-entropy")
    for key, label in (("train_clip_accuracy", "training (clips)"),
                       ("valid_clip_accuracy", "validation (clips)"),
                       ("valid_song_accuracy", "validation (songs, vote)")):
        values = _series(rows, key)
        if values is not None:
            acc_ax.plot(epochs, values, label=label, **style)
    acc_ax.set(title="accuracy", ylabel="accuracy", ylim=(0, 1.02))
    rates = _series(rows, "lr")
    if rates is not None:
        lr_ax.plot(epochs, rates, color="tab:gray", drawstyle="steps-mid", **style)
    lr_ax.set(title="learning rate", ylabel="learning rate", yscale="log")
    for axis in (loss_ax, acc_ax, lr_ax):
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    loss_ax.legend()
    acc_ax.legend(loc="best")
    return save_figure(figure, path)


def _confusion_scores(scores: dict) -> dict:
    """The score dict holding 'confusion' (an evaluation's, or a training report's 'test')."""
    if isinstance(scores, dict) and "confusion" in scores:
        return scores
    if isinstance(scores, dict) and isinstance(scores.get("test"), dict) and \
            "confusion" in scores["test"]:
        return scores["test"]
    raise ValueError("no confusion matrix here: expected the scores of an evaluation "
                     "(keys 'confusion', 'classes') or a training report with 'test'")


# The most classes a confusion figure draws: one label and count per cell stays legible, and a
# report's numbers cannot make it draw a million cells.
MAX_CONFUSION_CLASSES = 100


def _confusion_matrix(scores: dict) -> tuple[np.ndarray, list]:
    """``(counts (n, n) int64, n class names)`` of a score dict; ``ValueError`` for anything
    else (a report is a file a user may have edited or received)."""
    confusion = scores["confusion"]
    n = len(confusion) if isinstance(confusion, list) else 0
    if not 1 <= n <= MAX_CONFUSION_CLASSES or not all(
            isinstance(row, list) and len(row) == n and all(
                type(c) is int and 0 <= c < 2 ** 62 for c in row) for row in confusion):
        raise ValueError(f"the confusion matrix must be a square table of song counts with 1 to "
                         f"{MAX_CONFUSION_CLASSES} rows")
    classes = scores.get("classes") or [str(i) for i in range(n)]
    if not isinstance(classes, list) or len(classes) != n or not all(
            isinstance(c, str) and len(c) <= 200 for c in classes):
        raise ValueError(f"the class names must be a list of {n} names, one per matrix row")
    return np.asarray(confusion, dtype=np.int64), classes


def plot_confusion(scores_dict: dict, path) -> Path:
    """Draw the confusion matrix (rows: true class, columns: predicted) with class names and song
    counts; colours are row fractions, so classes of different sizes compare. Returns the path."""
    scores = _confusion_scores(scores_dict)
    counts, classes = _confusion_matrix(scores)
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = new_figure("confusion")
    axis = figure.subplots()
    shown = axis.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    size = max(6.0, min(12.0, 110.0 / len(classes)))   # counts stay legible up to ~20 classes
    for (row, column), count in np.ndenumerate(counts):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=size,
                  color="white" if fractions[row, column] > 0.55 else "black")
    ticks = np.arange(len(classes))
    axis.set_xticks(ticks, classes, rotation=45, ha="right", rotation_mode="anchor")
    axis.set_yticks(ticks, classes)
    axis.set(xlabel="predicted genre", ylabel="true genre")
    title = "confusion matrix (songs)"
    if isinstance(scores.get("song_accuracy"), (int, float)):
        title += f": accuracy {scores['song_accuracy']:.3f} over {int(counts.sum())} songs"
    axis.set_title(title)
    figure.colorbar(shown, ax=axis, label="fraction of the true genre's songs", shrink=0.8)
    return save_figure(figure, path)


def write_run_figures(run_dir, model=None) -> list[Path]:
    """Write ``curves.png`` (from log.csv) and ``filterbank.png`` (of ``model``, default the
    folder's best.pt, else last.pt) into a training run's folder; skip what the folder lacks (no
    log yet, a model without sinc layers). Returns the paths written."""
    run_dir = Path(run_dir)
    written = []
    if (run_dir / "log.csv").is_file():
        written.append(plot_training_curves(run_dir / "log.csv", run_dir / "curves.png"))
    if model is None:
        saved = [run_dir / n for n in ("best.pt", "last.pt") if (run_dir / n).is_file()]
        model = as_model(saved[0]) if saved else None
    if model is not None and any(True for _ in sinc_layers(model)):
        written.append(plot_filterbank(model, run_dir / "filterbank.png"))
    return written
