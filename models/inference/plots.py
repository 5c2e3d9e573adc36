"""Figures of a trained genre classifier, written as PNG files (those of a training run are in
:mod:`models.inference.run_plots`).

- :func:`plot_filterbank`: every sinc bank's learned cut-offs against their mel initialisation,
  the shift of every cut-off, and the filters' frequency responses;
- :func:`plot_representation`: one clip's three learned 2D representations beside its log-Mel
  spectrogram (the paper's Fig. 4);

Figures are drawn on matplotlib ``Figure`` objects rendered by the Agg canvas directly, never
through pyplot: no display is needed, nothing global (the user's pyplot backend, open figures)
is touched, and every PNG has the fixed pixel size :func:`figure_pixels` gives.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from sincfb import hz_to_mel, mel_to_hz, sinc_layers

from ..base.fileio import atomic_path

__all__ = ["plot_filterbank", "plot_representation", "figure_pixels", "new_figure", "save_figure",
           "as_model", "DPI"]

DPI = 100
#: Figure sizes in inches; every PNG is exactly (width * DPI, height * DPI) pixels.
FIGURE_INCHES = {"filterbank": (15.0, 14.0), "representation": (14.0, 8.0),
                 "curves": (15.0, 4.5), "confusion": (8.5, 7.5)}
RESPONSE_FFT = 2048          # rfft length of the frequency responses: fs/2048 Hz resolution
RESPONSE_FLOOR_DB = -60.0    # responses are drawn down to this level below each filter's peak
REPRESENTATION_RANGE_DB = -40.0   # learned images are drawn over this range below their top


def figure_pixels(kind: str) -> tuple[int, int]:
    """(width, height) in pixels of the PNG written for figure ``kind``."""
    width, height = FIGURE_INCHES[kind]
    return int(round(width * DPI)), int(round(height * DPI))


# ------------------------------------------------------------------------------ helpers
def new_figure(kind: str):
    """A fixed-size figure with constrained layout (labels never overlap or get cut off)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES[kind], dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path) -> Path:
    """Write ``figure`` as PNG through a temporary file and a rename (never a half-written PNG)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def as_model(model_or_checkpoint):
    """A model as given, or the one in a checkpoint file, loaded on the CPU with the sinc banks'
    backend re-picked for it (the one recorded at training time may need a GPU)."""
    if isinstance(model_or_checkpoint, torch.nn.Module):
        return model_or_checkpoint
    from .predict import load_classifier
    return load_classifier(model_or_checkpoint, "cpu").model


def _mel_axis(axis, which: str = "y") -> None:
    """Put a frequency axis on the mel scale (ticks stay in Hz): the mel initialisation becomes a
    straight line and the narrow low-frequency filters get the room they need."""
    setter = axis.set_yscale if which == "y" else axis.set_xscale
    setter("function", functions=(hz_to_mel, mel_to_hz))
    ticks = [100, 500, 1000, 2000, 4000, 8000, 16000]     # far enough apart on a mel axis
    limit = axis.get_ylim() if which == "y" else axis.get_xlim()
    shown = [t for t in ticks if limit[0] <= t <= limit[1]]
    (axis.set_yticks if which == "y" else axis.set_xticks)(shown, [f"{t:g}" for t in shown])


# ------------------------------------------------------------------------------ filterbank
def _responses_db(layer) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies in Hz, |rfft| of every filter in dB re. its own peak)``: (F,), (K, F)."""
    with torch.no_grad():
        taps = layer.filters(dtype=torch.float64)
    magnitude = torch.fft.rfft(taps, n=max(RESPONSE_FFT, taps.shape[1])).abs().numpy()
    db = 20 * np.log10(magnitude / magnitude.max(axis=1, keepdims=True) + 1e-12)
    freqs = np.fft.rfftfreq(max(RESPONSE_FFT, taps.shape[1]), d=1.0 / layer.sample_rate)
    return freqs, np.maximum(db, RESPONSE_FLOOR_DB)


def _edges_hz(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, initial low, initial high)`` cut-offs of ``layer`` in Hz, (K,) each."""
    low, high = (t.double().numpy() for t in layer.cutoffs_hz())
    init_low, init_high = (t.numpy() for t in layer.initial_cutoffs_hz())
    return low, high, init_low, init_high


def _draw_cutoffs(axis, name: str, layer) -> None:
    """The mel initialisation as a grey band (start), the learned edges as blue lines with
    markers (end); the title gives the mean and largest shift."""
    low, high, init_low, init_high = _edges_hz(layer)
    k = np.arange(len(low))
    axis.fill_between(k, init_low, init_high, color="0.6", alpha=0.45, linewidth=0,
                      label="start: mel initialisation")
    axis.plot(k, low, color="tab:blue", linewidth=1.0, marker=".", markersize=3,
              label="end: learned low / high cut-off")
    axis.plot(k, high, color="tab:blue", linewidth=1.0, marker=".", markersize=3)
    axis.set_ylim(max(20.0, min(low.min(), init_low.min()) * 0.8), layer.sample_rate / 2)
    _mel_axis(axis, "y")
    shift = np.abs(np.concatenate([low - init_low, high - init_high]))
    axis.set(title=f"{name}: {len(low)} filters of {layer.kernel_size} taps\n"
                   f"cut-offs moved {shift.mean():.3g} Hz on average, at most {shift.max():.3g} Hz",
             xlabel="filter index", ylabel="cut-off frequency (Hz, mel scale)")
    axis.legend(loc="upper left", fontsize=9)


def _draw_shifts(axis, layer) -> None:
    """Every cut-off's shift from its mel initialisation, in mel (0: it never moved)."""
    low, high, init_low, init_high = _edges_hz(layer)
    k = np.arange(len(low))
    axis.axhline(0.0, color="0.4", linewidth=0.8)
    axis.plot(k, hz_to_mel(low) - hz_to_mel(init_low), color="tab:blue", marker=".",
              linewidth=1.0, label="low cut-off")
    axis.plot(k, hz_to_mel(high) - hz_to_mel(init_high), color="tab:orange", marker=".",
              linewidth=1.0, label="high cut-off")
    axis.set(title="shift from the mel initialisation (end - start)", xlabel="filter index",
             ylabel="shift (mel)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")


def _draw_response_map(axis, freqs: np.ndarray, db: np.ndarray):
    rows = np.arange(db.shape[0])           # cell centres (shading="nearest")
    # pcolormesh, not imshow: an image cannot follow the mel-scaled frequency axis
    mesh = axis.pcolormesh(freqs, rows, db, shading="nearest", cmap="magma",
                           vmin=RESPONSE_FLOOR_DB, vmax=0, rasterized=True)
    axis.set_xlim(max(20.0, freqs[1]), freqs[-1])
    _mel_axis(axis, "x")
    axis.set(title="frequency responses |rfft(taps)|", xlabel="frequency (Hz, mel scale)",
             ylabel="filter index")
    return mesh


def _draw_response_curves(axis, freqs: np.ndarray, db: np.ndarray) -> None:
    picks = np.unique(np.linspace(0, db.shape[0] - 1, 6).round().astype(int))
    for k in picks:
        axis.plot(freqs[1:], db[k, 1:], linewidth=1.0, label=f"filter {k}")
    axis.set_xlim(max(20.0, freqs[1]), freqs[-1])
    axis.set_ylim(RESPONSE_FLOOR_DB, 25)     # headroom above 0 dB holds the legend
    _mel_axis(axis, "x")
    axis.set(title="selected filters", xlabel="frequency (Hz, mel scale)",
             ylabel="magnitude (dB re. peak)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=3, loc="upper center")


def plot_filterbank(model_or_checkpoint, path) -> Path:
    """Draw every sinc bank of a model (or a checkpoint path): learned cut-offs against the mel
    initialisation (top), each cut-off's shift in mel (second row), all filters' frequency
    responses in dB (third), six of them as curves (bottom). One column per bank. Returns the PNG
    path."""
    layers = list(sinc_layers(as_model(model_or_checkpoint)))
    if not layers:
        raise ValueError("this model has no sinc filterbank to draw")
    figure = new_figure("filterbank")
    axes = figure.subplots(4, len(layers), squeeze=False,
                           gridspec_kw={"height_ratios": (1.2, 0.7, 1.0, 1.0)})
    for column, (name, layer) in enumerate(layers):
        _draw_cutoffs(axes[0, column], name, layer)
        _draw_shifts(axes[1, column], layer)
        freqs, db = _responses_db(layer)
        mesh = _draw_response_map(axes[2, column], freqs, db)
        _draw_response_curves(axes[3, column], freqs, db)
    figure.colorbar(mesh, ax=axes[2, :].tolist(), label="dB re. each filter's peak", pad=0.01)
    figure.suptitle("Learned sinc filterbanks", fontsize=14)
    return save_figure(figure, path)


# ------------------------------------------------------------------------------ representation
def _waveform(model, audio) -> np.ndarray:
    """A 1-D float32 waveform at the model's sample rate from a path or an array/tensor."""
    if isinstance(audio, (str, Path)):
        from ..data.audio import load_audio
        return load_audio(audio, int(model.sample_rate))
    samples = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if samples.ndim != 1:
        raise ValueError(f"a waveform must be 1-D (mono samples), got shape {samples.shape}")
    return samples.astype(np.float32, copy=False)


def _pick_clip(track: np.ndarray, clip_samples: int, offset: Optional[float],
               sample_rate: float) -> tuple[np.ndarray, int]:
    """One clip (zero-padded) and its start: at ``offset`` seconds, or the track's middle clip,
    which is more typical of a song than its intro."""
    latest = max(0, len(track) - clip_samples)
    start = latest // 2 if offset is None else min(max(0, int(round(offset * sample_rate))), latest)
    clip = np.zeros(clip_samples, dtype=np.float32)
    piece = track[start:start + clip_samples]
    clip[: len(piece)] = piece
    return clip, start


def _log_mel(clip: np.ndarray, sample_rate: float, frames: int) -> np.ndarray:
    """128-band log-Mel spectrogram (dB, 80 dB range) with about ``frames`` frames."""
    import torchaudio

    hop = max(1, len(clip) // frames)      # the learned images' time resolution
    # 2048-point frames: at 16 kHz the lowest of 128 Mel bands are narrower than 1024-point bins
    mel = torchaudio.transforms.MelSpectrogram(int(sample_rate), n_fft=2048, hop_length=hop,
                                               n_mels=128, f_min=0.0, f_max=sample_rate / 2)
    power = mel(torch.from_numpy(clip))
    return torchaudio.transforms.AmplitudeToDB("power", top_db=80)(power).numpy()


@torch.no_grad()
def _learned_images(model, clip: np.ndarray) -> np.ndarray:
    """The model's learned representation of one clip as (channels, rows, columns)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()                 # running BatchNorm statistics, as at inference
    try:
        image = model.representation(torch.from_numpy(clip)[None].to(device))
    finally:
        model.train(was_training)
    image = image[0].float().cpu().numpy()
    return image if image.ndim == 3 else image[None]


def _activation_db(image: np.ndarray) -> np.ndarray:
    """Pooled ReLU amplitudes in dB below their 99.5th percentile, floored at
    ``REPRESENTATION_RANGE_DB``. A log scale like the Mel panel's: on a linear one the few loudest
    (narrow, low-frequency) filters wash out every other row."""
    top = float(np.percentile(image, 99.5)) or float(image.max()) or 1.0
    floor = top * 10 ** (REPRESENTATION_RANGE_DB / 20)
    return np.minimum(20 * np.log10(np.maximum(image, floor) / top), 0.0)


def _channel_names(model, count: int) -> list[str]:
    layers = list(sinc_layers(model))
    if len(layers) == count:
        return [f"{name} (L = {layer.kernel_size})" for name, layer in layers]
    return [f"channel {i + 1}" for i in range(count)]


def plot_representation(model, audio, path, offset: Optional[float] = None) -> Path:
    """Draw one clip's log-Mel spectrogram beside the model's learned 2D representations (the
    paper's Fig. 4).

    Args:
        model: an MS-SincResNet-like model (``representation``, ``sample_rate``, ``clip_samples``)
            or a checkpoint path.
        audio: an audio file path, or a 1-D waveform at the model's sample rate.
        path: the PNG to write.
        offset: start of the clip in seconds; default the middle clip of the track. A track
            shorter than one clip is zero-padded.
    """
    model = as_model(model)
    rate = float(model.sample_rate)
    clip, start = _pick_clip(_waveform(model, audio), model.clip_samples, offset, rate)
    images = _learned_images(model, clip)
    mel = _log_mel(clip, rate, images.shape[-1])
    seconds = (start / rate, (start + len(clip)) / rate)
    figure = new_figure("representation")
    axes = figure.subplots(2, 2, squeeze=False).ravel()
    shown = axes[0].imshow(mel, origin="lower", aspect="auto", cmap="magma",
                           extent=(*seconds, 0, mel.shape[0]))
    axes[0].set(title="log-Mel spectrogram (128 bands)", ylabel="Mel band")
    figure.colorbar(shown, ax=axes[0], label="dB")
    for axis, image, name in zip(axes[1:], images, _channel_names(model, len(images))):
        shown = axis.imshow(_activation_db(image), origin="lower", aspect="auto", cmap="magma",
                            vmin=REPRESENTATION_RANGE_DB, vmax=0,
                            extent=(*seconds, -0.5, image.shape[0] - 0.5))
        axis.set(title=f"learned representation: {name}", ylabel="filter index")
        figure.colorbar(shown, ax=axis, label="activation (dB re. top)")
    for axis in axes[len(images) + 1:]:
        axis.set_visible(False)
    for axis in axes:
        axis.set_xlabel("time (s)")
    figure.suptitle(f"One {len(clip) / rate:g}-s clip and what the model sees", fontsize=14)
    return save_figure(figure, path)
