"""The classical reference: what an MIR practitioner tries first.

Per song (one manifest row), summary statistics over frames of

- a log-mel spectrogram (96 bands, 0-8 kHz, 64-ms frames, hop 32 ms at 16 kHz; dB of the power):
  the mean, the standard deviation and the mean absolute difference between consecutive frames
  of every band (288 values);
- a chroma (12 pitch classes, C first: the STFT power of 100 Hz-4 kHz, 256-ms frames, each bin
  given to its nearest equal-tempered pitch class, every frame scaled to a maximum of 1): the
  mean and the standard deviation of every class (24 values);

standardised on the training songs, then a multinomial logistic regression (float64, full-batch
L-BFGS) whose L2 weight is chosen by validation accuracy (ties: the lower validation
cross-entropy). Songs are decoded by :func:`models.audio.load_audio`, as training decodes them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from bench.common import SAMPLE_RATE
from models.audio import load_audio

__all__ = ["SAMPLE_RATE", "L2_GRID", "FeatureSettings", "log_mel_statistics", "chroma",
           "chroma_statistics", "song_features", "features_of", "fit_logistic", "predict_proba",
           "select_and_test", "classical_reference"]

#: L2 weights tried (on the mean cross-entropy of standardised features).
L2_GRID = tuple(10.0 ** e for e in range(-5, 2))
EPSILON_DB = 1e-10          # power floor before dB: -100 dB, far below 16-bit audio


@dataclass(frozen=True)
class FeatureSettings:
    """Frame and band choices of the features (defaults: the module docstring's)."""

    sample_rate: int = SAMPLE_RATE
    mel_bands: int = 96
    mel_fft: int = 1024
    mel_hop: int = 512
    chroma_fft: int = 4096
    chroma_hop: int = 2048
    chroma_low_hz: float = 100.0
    chroma_high_hz: float = 4000.0


def _framewise_statistics(frames: np.ndarray) -> np.ndarray:
    """Mean, standard deviation and mean absolute frame-to-frame difference of every row of a
    (features, frames) array, concatenated."""
    frames = np.asarray(frames, dtype=np.float64)
    diff = np.abs(np.diff(frames, axis=1)).mean(axis=1) if frames.shape[1] > 1 else \
        np.zeros(frames.shape[0])
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), diff])


def log_mel_statistics(samples: np.ndarray,
                       settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """The 3 x ``mel_bands`` log-mel statistics of a mono signal (see the module docstring)."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(
        settings.sample_rate, n_fft=settings.mel_fft, hop_length=settings.mel_hop,
        f_min=0.0, f_max=settings.sample_rate / 2, n_mels=settings.mel_bands, power=2.0)
    power = mel(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))).double()
    return _framewise_statistics(10 * torch.log10(power + EPSILON_DB).numpy())


def _pitch_class_matrix(settings: FeatureSettings) -> np.ndarray:
    """(12, bins) 0/1 matrix giving every STFT bin in the chroma range to its pitch class."""
    freqs = np.fft.rfftfreq(settings.chroma_fft, 1.0 / settings.sample_rate)
    inside = (freqs >= settings.chroma_low_hz) & (freqs <= settings.chroma_high_hz)
    # MIDI note number 69 is A4 = 440 Hz; pitch class = note mod 12 (C = 0)
    notes = np.round(69 + 12 * np.log2(np.where(inside, freqs, 440.0) / 440.0)).astype(int)
    matrix = np.zeros((12, len(freqs)))
    matrix[notes[inside] % 12, np.flatnonzero(inside)] = 1.0
    return matrix


def chroma(samples: np.ndarray, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """(12, frames) chroma of a mono signal, each frame scaled to a maximum of 1."""
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float64))
    spectrum = torch.stft(x, settings.chroma_fft, settings.chroma_hop,
                          window=torch.hann_window(settings.chroma_fft, dtype=torch.float64),
                          center=True, pad_mode="reflect", return_complex=True)
    energy = _pitch_class_matrix(settings) @ (spectrum.abs() ** 2).numpy()
    peak = energy.max(axis=0, keepdims=True)
    # a frame of silence has no pitch: all zeros rather than noise scaled up to 1
    return np.divide(energy, peak, out=np.zeros_like(energy), where=peak > 1e-12)


def chroma_statistics(samples: np.ndarray,
                      settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Mean and standard deviation of every pitch class of :func:`chroma` (24 values)."""
    frames = chroma(samples, settings)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1)])


def song_features(path, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Log-mel and chroma statistics of one audio file, decoded as training decodes it."""
    samples = load_audio(path, settings.sample_rate)
    return np.concatenate([log_mel_statistics(samples, settings),
                           chroma_statistics(samples, settings)])


# ------------------------------------------------------------------------ logistic regression
def fit_logistic(features: np.ndarray, labels: np.ndarray, classes: int, l2: float,
                 max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (classes, features) and biases of a multinomial logistic regression minimising
    the mean cross-entropy + ``l2`` / 2 * ||weights||^2 (biases not penalised), in float64."""
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    weights = torch.zeros(classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    biases = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, biases], lr=1.0, max_iter=max_iter,
                                  tolerance_grad=1e-10, tolerance_change=1e-14,
                                  history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weights.T + biases, y) + \
            0.5 * l2 * (weights ** 2).sum()
        loss.backward()
        return loss

    with _one_thread():
        optimiser.step(objective)
    return weights.detach(), biases.detach()


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread: these problems are small (hundreds of songs), so a second
    thread costs more in synchronisation than it gives, the more so on a shared CPU (5x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def predict_proba(model: tuple[torch.Tensor, torch.Tensor], features: np.ndarray) -> np.ndarray:
    """Class probabilities (songs, classes) of :func:`fit_logistic`'s model."""
    weights, biases = model
    logits = torch.as_tensor(features, dtype=torch.float64) @ weights.T + biases
    return torch.softmax(logits, dim=1).numpy()


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every array scaled by the training rows' mean and standard deviation (a constant column
    stays 0)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(a - mean) / std for a in (train, *others)]


def _cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(picked, 1e-300))))


def _vote_accuracy(probabilities: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> float:
    """Accuracy per group (a track) of the mean of its songs' probabilities."""
    groups = np.asarray(groups)
    hits = [int(np.argmax(probabilities[groups == g].mean(axis=0)) == labels[groups == g][0])
            for g in np.unique(groups)]
    return float(np.mean(hits))


def select_and_test(features: np.ndarray, labels: np.ndarray, splits: np.ndarray, classes: int,
                    groups: Optional[Sequence[str]] = None,
                    grid: Sequence[float] = L2_GRID) -> dict:
    """Fit on the 'train' rows for every L2 weight of ``grid``, keep the one with the best
    validation accuracy (ties: lower validation cross-entropy), report its test accuracy per
    song and, with ``groups`` (each song's track), per track by the mean of its probabilities."""
    splits = np.asarray(splits)
    parts = {name: np.flatnonzero(splits == name) for name in ("train", "valid", "test")}
    for name, rows in parts.items():
        if len(rows) == 0:
            raise ValueError(f"the {name} split is empty")
    train, valid, test = _standardise(*(features[parts[n]] for n in ("train", "valid", "test")))
    tried = []
    for l2 in grid:
        model = fit_logistic(train, labels[parts["train"]], classes, l2)
        probabilities = predict_proba(model, valid)
        tried.append({"l2": l2, "valid_accuracy": float(np.mean(
            probabilities.argmax(axis=1) == labels[parts["valid"]])),
            "valid_cross_entropy": _cross_entropy(probabilities, labels[parts["valid"]]),
            "model": model})
    best = max(tried, key=lambda t: (t["valid_accuracy"], -t["valid_cross_entropy"]))
    probabilities = predict_proba(best["model"], test)
    result = {"l2": best["l2"], "valid_song_accuracy": best["valid_accuracy"],
              "test_song_accuracy": float(np.mean(probabilities.argmax(axis=1) ==
                                                  labels[parts["test"]])),
              "train_song_accuracy": float(np.mean(predict_proba(best["model"], train)
                                                   .argmax(axis=1) == labels[parts["train"]])),
              "songs": {name: int(len(rows)) for name, rows in parts.items()},
              "grid": [{k: v for k, v in t.items() if k != "model"} for t in tried]}
    if groups is not None:
        test_groups = np.asarray(groups)[parts["test"]]
        result["test_track_accuracy"] = _vote_accuracy(probabilities, labels[parts["test"]],
                                                       test_groups)
        result["tracks"] = {"test": int(len(np.unique(test_groups)))}
    return result


def features_of(paths: Sequence[Path], settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """(songs, 312) features of every file (see :func:`song_features`)."""
    return np.stack([song_features(path, settings) for path in paths])



def classical_reference(manifest_path, split_seeds: Sequence[int] = (),
                        settings: FeatureSettings = FeatureSettings()) -> dict:
    """The reference on a manifest: on its own split, and on the same tracks re-split by track
    with each of ``split_seeds`` (:func:`bench.real_music.dataset.split_by_track`), which shows
    how much the accuracy depends on which tracks are held out."""
    import time

    from models.data import manifest

    from .dataset import split_by_track, track_of, tracks_by_label

    started = time.perf_counter()
    tracklist = manifest(manifest_path)
    with _one_thread():
        features = features_of([t.path for t in tracklist.tracks], settings)
    labels, classes = tracklist.labels, len(tracklist.classes)
    groups = [track_of(t.name) for t in tracklist.tracks]
    result = {"settings": settings.__dict__, "features": int(features.shape[1]),
              "feature_seconds": round(time.perf_counter() - started, 1),
              "manifest_split": select_and_test(features, labels,
                                                np.array([t.split for t in tracklist.tracks]),
                                                classes, groups)}
    result["resplits"], by_label = [], tracks_by_label(tracklist)
    for seed in split_seeds:
        assignment = split_by_track(by_label, seed)
        outcome = select_and_test(features, labels, np.array([assignment[g] for g in groups]),
                                  classes, groups)
        result["resplits"].append({"split_seed": seed, **outcome})
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
