"""The model card: what a checkpoint holds, how it was made and how it scored.

Every checkpoint the trainer writes carries its card as JSON under ``card``, and ``best.pt`` also
gets a ``MODEL_CARD.md`` beside it. The card holds the model and its parameter count; the recipe
and every value that differs from it; the dataset, its split and song counts; the classes in
output order; song and clip accuracy on the validation (and, once the run has evaluated it, test)
split with their confusion matrices; the trunk initialisation; how the sinc cut-offs were trained
and how far they moved from their mel initialisation; seed, versions and git commit;
training time and device. Test scores exist only after training, so the run finishes the card of
``best.pt`` (file and checkpoint) with :func:`add_test_scores`.
"""
from __future__ import annotations

import copy
import datetime
import functools
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional

from .config import TrainConfig

__all__ = ["CARD_FORMAT", "CARD_NAME", "build_card", "card_summary", "card_markdown",
           "write_card", "add_test_scores", "checkpoint_summary", "describe_device",
           "describe_split"]

CARD_FORMAT = "sincfb-model-card/1"
CARD_NAME = "MODEL_CARD.md"
_SPLITS = ("valid", "test")
_PACKAGES = ("torchvision", "torchaudio", "numpy")


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def source_commit() -> Optional[str]:
    """The git commit of the code that runs (``+dirty`` with uncommitted changes), or None when
    the package is not a git checkout of its own (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]      # the folder that holds models/

    def git(*args) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # a package installed inside some other repository's folder (a venv in a checkout) is not
    # that repository's code
    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None
    head = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return None if head is None else head + ("+dirty" if dirty else "")


def describe_device(device) -> str:
    """'cuda:0 (NVIDIA H200)' or 'cpu (Intel(R) Xeon(R) Processor, 2 threads)'."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{device} ({name}, {torch.get_num_threads()} threads)"


def _software() -> dict:
    """Versions of the code that trained (the imported sincfb and torch, as they report
    themselves), Python, and the git commit."""
    import sincfb
    import torch

    return {"sincfb": sincfb.__version__, "torch": torch.__version__,
            **{name: _version(name) for name in _PACKAGES},
            "python": platform.python_version(), "git_commit": source_commit()}


def _recipe_differences(config: TrainConfig) -> tuple[str, dict]:
    """The recipe the settings are compared with (the paper's for one that is not a named
    recipe, e.g. the demo's) and ``{field: {'run': value, 'recipe': value}}`` where they differ."""
    from .recipes import RECIPES, recipe_config

    base = config.recipe if config.recipe in RECIPES else "paper"
    reference, current = recipe_config(base).to_dict(), config.to_dict()
    return base, {key: {"run": value, "recipe": reference[key]} for key, value in current.items()
                  if key != "recipe" and value != reference[key]}


def _scores(scores: dict) -> dict:
    """The card's view of :func:`models.evaluation.scoring.score`'s output."""
    return {key: scores[key] for key in ("song_accuracy", "clip_accuracy", "songs", "clips",
                                         "confusion") if key in scores}


def _front_end(config: TrainConfig, row: dict) -> dict:
    """How the sinc cut-offs were treated (:mod:`models.training.cutoffs`) and, per bank, how far they
    had moved from the mel initialisation after the card's epoch (empty without sinc layers)."""
    from .cutoffs import shift_summary

    treatment = {"cutoffs": config.cutoffs}
    if config.cutoffs == "learn":
        treatment["cutoff_lr_scale"] = config.cutoff_lr_scale
    return {**treatment, "shift": shift_summary(row)}


def build_card(*, config: TrainConfig, classes, dataset: str, split_sizes: dict,
               split_spec: Optional[dict], parameters: int, epoch: int, best: dict,
               history: list, scores: dict, device: str) -> dict:
    """The card of a checkpoint holding the weights after ``epoch`` (1-based; 0 before any).

    ``scores``: ``{split: score dict}`` of that epoch's evaluations (confusion matrices), where
    known; the history row of the epoch gives the accuracies otherwise. JSON types only.
    """
    from .checkpoints import head_and_trunk

    base, differences = _recipe_differences(config)
    spp, trunk = head_and_trunk(config)
    row = history[epoch - 1] if 0 < epoch <= len(history) else {}
    results = {}
    for split in _SPLITS:
        if split in scores:
            results[split] = _scores(scores[split])
        elif f"{split}_song_accuracy" in row:
            results[split] = {"song_accuracy": row[f"{split}_song_accuracy"],
                              "clip_accuracy": row[f"{split}_clip_accuracy"],
                              "songs": split_sizes.get(split)}
    card = {
        "format": CARD_FORMAT,
        "model": {"name": config.model, "kwargs": config.model_kwargs, "parameters": parameters,
                  "spp": spp, "sample_rate": config.sample_rate,
                  "clip_samples": config.clip_samples, "hop_samples": config.hop_samples,
                  "size": config.size},
        "front_end": _front_end(config, row),
        "recipe": {"name": config.recipe, "compared_with": base, "differences": differences},
        "data": {"dataset": dataset, "songs": sum(split_sizes.values()), "splits": split_sizes,
                 "split": split_spec, "classes": list(classes)},
        "trunk": trunk,
        "training": {"epoch": epoch, "epochs": config.epochs, "epochs_run": len(history),
                     "best_epoch": best.get("epoch"), "selected_on": config.select_on,
                     **_time_totals(history),
                     "device": device, "seed": config.seed},
        "scores": results,
        "software": _software(),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    card = json.loads(json.dumps(card))          # tuples -> lists: exactly what JSON holds
    card["summary"] = card_summary(card)
    return card


def card_summary(card: dict) -> str:
    """One line: model, size, recipe, data, scores, seed and code version."""
    model, data, training = card["model"], card["data"], card["training"]
    scores = "; ".join(f"{split} song {s['song_accuracy']:.3f} clip {s['clip_accuracy']:.3f}"
                       for split, s in card["scores"].items()) or "not evaluated"
    commit = card["software"].get("git_commit")
    return (f"{model['name']} ({model['parameters'] / 1e6:.1f} M parameters, recipe "
            f"{card['recipe']['name']}, {_trunk_words(card['trunk'])}) on {data['dataset']} "
            f"({len(data['classes'])} classes, {data['songs']} songs), epoch "
            f"{training['epoch']}/{training['epochs']}: {scores}; seed {training['seed']}, "
            f"sincfb {card['software'].get('sincfb')}"
            + (f", commit {commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''}"
               if commit else ""))


def _trunk_words(trunk: Optional[str]) -> str:
    """'trunk random', or 'no trunk' for a model without one (SincNet)."""
    return "no trunk" if trunk is None else f"trunk {trunk}"


def _head_words(spp: Optional[bool]) -> str:
    """The classifier head of the card's model."""
    if spp is None:
        return "its own fully-connected layers (no spatial pyramid pooling)"
    return "spatial pyramid pooling (paper)" if spp else "global average pool + fc"


def describe_split(split: dict) -> str:
    """How the songs were split, in words: the dataset's own split is named as such."""
    protocol = split.get("protocol")
    if protocol == "predefined":
        words = "the dataset's own train/valid/test split (predefined)"
    elif protocol == "filtered":
        words = "GTZAN's fault-filtered split"
    elif protocol == "cv":
        words = f"{split.get('folds')}-fold cross-validation, test fold {split.get('fold')}"
    else:
        return ", ".join(f"{k} {v}" for k, v in split.items()) or "as recorded in the checkpoint"
    return words + (f", seed {split['seed']}" if "seed" in split else "")


def _table(rows) -> list[str]:
    """A two-column markdown table of (name, value) rows."""
    return ["| | |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]


def _confusion_lines(split: str, scores: dict, classes: list) -> list[str]:
    matrix = scores.get("confusion")
    if not matrix:
        return []
    lines = ["", f"Confusion matrix, {split} (rows: true class, columns: predicted; songs):", "",
             "| | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [f"| **{name}** | " + " | ".join(str(v) for v in row) + " |"
              for name, row in zip(classes, matrix)]
    return lines



def _step_seconds(row: dict) -> float:
    # rows written before wall times were logged have only "seconds", the training steps' time
    return row.get("step_seconds", row.get("seconds", 0.0))


def _time_totals(history: list) -> dict:
    """The run's wall time and training-step time, summed over the epochs of ``history``; an
    epoch logged before wall times were kept counts its step time as its wall time."""
    return {"wall_seconds": round(sum(r.get("wall_seconds", _step_seconds(r)) for r in history), 1),
            "step_seconds": round(sum(_step_seconds(r) for r in history), 1)}


def _time_line(training: dict) -> str:
    """The card's time row; a card written before wall times were kept has only "seconds"."""
    if "wall_seconds" not in training:
        return f"{training.get('seconds', 0.0):.0f} s in training steps"
    return (f"{training['wall_seconds']:.0f} s wall time over the epochs (training, "
            f"evaluation), {training['step_seconds']:.0f} s of it in training steps")


_TREATMENTS = {"decay": "trained like every weight (one SGD group, with weight decay)",
               "learn": "trained in their own group, without weight decay",
               "freeze": "frozen at the mel initialisation"}


def _front_end_lines(front_end: Optional[dict]) -> list[str]:
    """The card's sinc cut-off section: their treatment and each bank's shift."""
    if not front_end or not front_end["shift"]:
        return []
    rate = (f", at {front_end['cutoff_lr_scale']:g} x the base rate"
            if "cutoff_lr_scale" in front_end else "")
    lines = ["", "## Sinc cut-offs", "", f"Cut-offs {_TREATMENTS[front_end['cutoffs']]}{rate}. "
             "How far they are from their mel initialisation (both edges of every filter):", "",
             "| bank | mean shift (Hz) | max shift (Hz) | mean shift (mel) | max shift (mel) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {bank} | {s['mean_hz']:.2f} | {s['max_hz']:.2f} | {s['mean_mel']:.2f} | "
              f"{s['max_mel']:.2f} |" for bank, s in front_end["shift"].items()]
    return lines


def card_markdown(card: dict, checkpoint: str = "best.pt") -> str:
    """``MODEL_CARD.md``: the card of ``checkpoint`` as markdown."""
    model, data, training, recipe = card["model"], card["data"], card["training"], card["recipe"]
    split = data["split"] or {}
    software = ", ".join(f"{name} {version}" for name, version in card["software"].items()
                         if version and name != "git_commit")
    lines = [f"# Model card: {model['name']} on {data['dataset']}", "", card["summary"], "",
             f"This card describes `{checkpoint}` in this folder. The same facts are inside the "
             "checkpoint, as JSON under `card`.", "", "## Model", ""]
    lines += _table([
        ("model", f"`{model['name']}` `{json.dumps(model['kwargs'])}`"),
        ("head", _head_words(model["spp"])),
        ("parameters", f"{model['parameters']:,}"),
        ("input", f"clips of {model['clip_samples']} samples at {model['sample_rate']} Hz, hop "
                  f"{model['hop_samples']} samples"),
        ("size", model.get("size") or "as given by the settings"),
        ("trunk initialisation", card["trunk"] or "none: the model has no ResNet trunk")])
    lines += _front_end_lines(card.get("front_end"))
    lines += ["", "## Data", ""]
    lines += _table([
        ("dataset", data["dataset"]),
        ("songs", f"{data['songs']}: " + ", ".join(f"{k} {v}" for k, v in data["splits"].items())),
        ("split", describe_split(split)),
        ("classes, in output order", ", ".join(data["classes"]))])
    lines += ["", "## Recipe", "", f"Recipe `{recipe['name']}`; the values that differ from the "
              f"`{recipe['compared_with']}` recipe:", ""]
    if recipe["differences"]:
        lines += ["| setting | this run | recipe |", "|---|---|---|"]
        lines += [f"| `{key}` | `{json.dumps(d['run'])}` | `{json.dumps(d['recipe'])}` |"
                  for key, d in recipe["differences"].items()]
    else:
        lines += ["none."]
    lines += ["", "## Results", ""]
    if card["scores"]:
        lines += ["| split | songs | song accuracy | clip accuracy |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {s.get('songs')} | {s['song_accuracy']:.4f} | "
                  f"{s['clip_accuracy']:.4f} |" for name, s in card["scores"].items()]
        for name, s in card["scores"].items():
            lines += _confusion_lines(name, s, data["classes"])
    else:
        lines += ["Not evaluated (no validation or test split)."]
    lines += ["", "## Training", ""]
    lines += _table([
        ("weights", f"after epoch {training['epoch']} of {training['epochs']} "
                    f"({training['epochs_run']} run; best on {training['selected_on']}: epoch "
                    f"{training['best_epoch']})"),
        ("time", _time_line(training)),
        ("device", training["device"]), ("seed", training["seed"]), ("software", software),
        ("code", f"git {card['software']['git_commit'] or 'commit unknown (not a checkout)'}"),
        ("written", card["written"])])
    lines += ["", "## Use", "", "```bash",
              f"mssincresnet predict my_music/ --checkpoint {checkpoint}",
              f"mssincresnet export --checkpoint {checkpoint} --format onnx --out model.onnx",
              "```", ""]
    return "\n".join(lines)


def write_card(folder, card: dict, checkpoint: str = "best.pt") -> Path:
    """Write ``MODEL_CARD.md`` for ``checkpoint`` into ``folder``, atomically; returns its path."""
    from ..base.fileio import atomic_write_text

    path = Path(folder) / CARD_NAME
    atomic_write_text(path, card_markdown(card, checkpoint))
    return path


def add_test_scores(checkpoint_path, scores: dict) -> dict:
    """Put the test scores into the card of a checkpoint written by the trainer (the file is
    rewritten atomically) and into the ``MODEL_CARD.md`` beside it; returns the new card."""
    from .checkpoints import read_checkpoint, save_checkpoint

    path = Path(checkpoint_path)
    state = read_checkpoint(path)
    card = copy.deepcopy(state["card"])
    card["scores"]["test"] = json.loads(json.dumps(_scores(scores)))
    card["summary"] = card_summary(card)
    state["card"] = card
    save_checkpoint(state, path)
    write_card(path.parent, card, path.name)
    return card


def checkpoint_summary(state: dict) -> Optional[str]:
    """The one-line summary of a loaded checkpoint: its card's, a line for the authors' released
    checkpoints, None for a checkpoint written before cards existed."""
    from .authors import AUTHORS_FORMAT
    from .recipes import AUTHORS_CODE

    summary = state["card"].get("summary") if isinstance(state.get("card"), dict) else None
    if isinstance(summary, str):                  # from a file: one printable line, not a page
        return "".join(c if c.isprintable() else " " for c in summary[:2000])
    if state.get("format") == AUTHORS_FORMAT:
        return (f"the authors' released MS-SincResNet ({AUTHORS_CODE}), "
                f"{len(state['classes'])} classes (order {state.get('class_order')}); no model "
                "card")
    return None
