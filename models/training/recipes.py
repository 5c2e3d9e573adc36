"""The two named training recipes, ``paper`` and ``authors``, and the source of every value.

``paper`` is the paper's text (Chang, Chen & Lee, ICMR 2021, as DESIGN.md §1 summarises it) with
its gaps filled as stated below; its values are the defaults of :class:`models.training.config.TrainConfig`.
``authors`` is the authors' released code, step by step: GitHub PeiChunChang/MS-SincResNet @
95799db1 (models.py, dataloader.py, main.py). Every value can be overridden (a flag, or a
``--config`` file). ``python -m models.training.recipes`` prints the table of the README.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .config import TrainConfig

__all__ = ["RECIPES", "SETTINGS", "Setting", "recipe_values", "recipe_config", "markdown_table",
           "AUTHORS_CODE"]

AUTHORS_CODE = "PeiChunChang/MS-SincResNet @ 95799db1"
RECIPES = ("paper", "authors")


@dataclass(frozen=True)
class Setting:
    """One row of the recipe table: a :class:`TrainConfig` field, where the paper's value (the
    field's default) comes from, and the authors' value with the line of their code it is read
    from."""

    field: str
    what: str
    paper_source: str
    authors: Any
    authors_source: str


SETTINGS = (
    Setting("sample_rate", "sample rate (Hz)", "paper: 16 kHz", 16000,
            "dataloader.py: `fs=16000`"),
    Setting("fixed_seconds", "every file stretched to (s)", "paper: not stated; real durations, "
            "band-limited resampling to 16 kHz", 30.0,
            "dataloader.py: `signal.resample(data, fs * 30)` (FFT, whole file)"),
    Setting("audio_scale", "sample scale", "resolved: [-1, 1] audio (the noise σ is only "
            "meaningful there)", 32768.0, "dataloader.py: `scipy.io.wavfile.read`, int16, never "
            "divided"),
    Setting("clip_seconds", "clip length (s)", "paper: 3-s clips", 3.0,
            "dataloader.py: `fs * (1 + ex_sample)`, `ex_sample=2`"),
    Setting("hop_seconds", "hop between clips (s)", "paper: 0.5 s", 0.5,
            "dataloader.py: `range(0, len, fs // 2)`"),
    Setting("frame_lookback_seconds", "clip layout: look-back (s)", "resolved: none, clips at "
            "0, 0.5 s, ... that lie inside the song", 2.0, "dataloader.py: frame i = "
            "`data[start - 2 s : start + 1 s]`, 60 frames; Python's negative indices at the "
            "head, zeros at the tail"),
    Setting("clips_per_song", "random clips per song and epoch", "paper: 4", 3,
            "dataloader.py: `randint(0, frame_num - 1, (3,))`, never the last frame"),
    Setting("batch_size", "clips per batch", "not stated; 24, the authors' batch", 24,
            "main.py: `BATCH_SIZE = 8` songs x 3 clips"),
    Setting("song_batches", "a batch holds whole songs", "not stated; clips shuffled "
            "independently", True, "main.py: a DataLoader over songs, `view(8 * 3, ...)`"),
    Setting("epochs", "epochs", "not stated; 200, as main.py's 'stable acc' implies", 200,
            "main.py: `np.mean(song_acc[175:200])` (`EPOCH_MAX = 2` as released)"),
    Setting("lr", "learning rate after warm-up", "paper: 0.005", 0.005,
            "main.py: `INIT_LR = 0.005`"),
    Setting("warmup_epochs", "warm-up epochs", "paper: 5", 5, "main.py: `if epoch < 5`"),
    Setting("warmup_lr", "warm-up learning rate", "paper: 1e-5", 1e-5,
            "main.py: `warm_up(optimizer, 1e-05)`"),
    Setting("halve_every", "halve the rate every (epochs)", "paper: every 30 epochs", 30,
            "main.py: `epoch % 30 == 0`"),
    Setting("halve_from", "halvings counted from epoch", "resolved as main.py: halvings at "
            "epochs 30, 60, ... (0-based), not 35, 65, ...", 0,
            "main.py: `epoch % 30 == 0 and epoch != 0`"),
    Setting("momentum", "SGD momentum", "paper: 0.9", 0.9, "main.py: `momentum=0.9`"),
    Setting("nesterov", "Nesterov momentum", "paper: Nesterov", True, "main.py: `nesterov=True`"),
    Setting("weight_decay", "weight decay", "paper: 1e-4", 1e-4,
            "main.py: `weight_decay=1e-04`"),
    Setting("cutoffs", "sinc cut-offs", "paper: learned with every other weight (one SGD group, "
            "weight decay); `learn` and `freeze` are options", "decay",
            "main.py: `optim.SGD(model.parameters(), ..., weight_decay=1e-04)`"),
    Setting("gain", "amplitude x U[1 - g, 1 + g]", "paper: U[0.9, 1.1]", 0.1,
            "dataloader.py `transform`: `rand * 0.2 + 0.9`, one per clip"),
    Setting("noise", "additive noise", "paper: Gaussian", "uniform",
            "dataloader.py `transform`: `(rand - 0.5) * 0.02`"),
    Setting("noise_std", "noise σ, or half-width if uniform", "paper: σ 0.02, resolved as "
            "relative to [-1, 1] audio", 0.01, "the same line: U[-0.01, 0.01) at int16 scale, "
            "3e-7 of full scale"),
    Setting("spp", "head", "paper: spatial pyramid pooling, two fully-connected layers", False,
            "models.py: resnet18's average pool and `fc = Linear(512, 10)`"),
    Setting("backbone", "trunk initialisation", "paper: ImageNet-initialised ResNet-18",
            "imagenet", "models.py: `resnet18(pretrained=True)`"),
    Setting("vote", "song decision", "paper: majority vote over the clips", "majority",
            "main.py `accuracy_song`: counts of the frames' argmax"),
    Setting("tie_break", "vote ties go to", "not stated; the higher mean probability", "lowest",
            "main.py: `np.argmax(vote)`, the lowest class index"),
    Setting("select_on", "epoch kept as best.pt", "not stated; the validation split, never the "
            "test fold", "valid", "main.py reports the best *test-fold* song accuracy; "
            "`--select-on test` reproduces it (optimistic)"),
)


def _paper_values() -> dict[str, Any]:
    """The paper recipe: :class:`TrainConfig`'s defaults of the fields in the table."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {s.field: defaults[s.field] for s in SETTINGS}


def recipe_values(name: str) -> dict[str, Any]:
    """``{field: value}`` of recipe ``name`` ('paper' or 'authors') for every table field."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {list(RECIPES)}")
    if name == "paper":
        return _paper_values()
    return {s.field: s.authors for s in SETTINGS}


def recipe_config(name: str, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name`` with ``overrides`` applied.

    A clip length other than the recipe's keeps the look-back's share of the clip (the authors'
    2 s of 3 s), unless ``frame_lookback_seconds`` is overridden too.
    """
    values = {**recipe_values(name), "recipe": name}
    lookback = values["frame_lookback_seconds"]
    if "clip_seconds" in overrides and lookback is not None:
        values["frame_lookback_seconds"] = lookback * overrides["clip_seconds"] / values["clip_seconds"]
    values.update(overrides)
    return TrainConfig(**values)


def _cell(value: Any) -> str:
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def markdown_table() -> str:
    """The recipe table of the README: every setting, both values, both sources."""
    paper = _paper_values()
    lines = ["| setting | field | `paper` | source | `authors` | source |",
             "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        lines.append(f"| {s.what} | `{s.field}` | {_cell(paper[s.field])} | {s.paper_source} | "
                     f"{_cell(s.authors)} | {s.authors_source} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """``python -m models.training.recipes``: print the table."""
    print(markdown_table(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
