"""Checkpoint files: the format the trainer writes, the authors' released files, and loading a
model from either with errors that fit on one line.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import torch

from .config import TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "AUTHORS_FORMAT", "CheckpointError", "build_from_config",
           "constructor_arguments", "head_and_trunk", "read_checkpoint", "check_classes",
           "load_model_state", "load_checkpoint"]

CHECKPOINT_FORMAT = "sincfb-genre/1"
AUTHORS_FORMAT = "authors-release"       # a checkpoint of the authors' main.py / demo.py


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (wrong file, other classes, other model)."""


def build_from_config(name: str, num_classes: int, model_kwargs: dict, sample_rate: int,
                      clip_samples: int, spp: Optional[bool] = None,
                      backbone: Optional[str] = None):
    """Instantiate a model of the models package, passing the clip geometry, the head (``spp``)
    and the trunk initialisation (``backbone``: 'imagenet', 'random', a path or None = random)
    where the model accepts them and ``model_kwargs`` does not set them."""
    from .registry import build_model

    accepted = constructor_arguments(name)
    kwargs = dict(model_kwargs)
    weights = None if backbone in (None, "random") else backbone
    for key, value in (("sample_rate", sample_rate), ("clip_samples", clip_samples),
                       ("spp", spp), ("backbone_weights", weights)):
        if key in accepted and value is not None:
            kwargs.setdefault(key, value)
    return build_model(name, num_classes, **kwargs)


def constructor_arguments(name: str) -> set:
    """The argument names of model ``name``'s constructor."""
    from .registry import MODELS, canonical_name

    return set(inspect.signature(MODELS[canonical_name(name)]).parameters)


def head_and_trunk(config: TrainConfig) -> tuple[Optional[bool], Optional[str]]:
    """``(spp, trunk)`` of the model ``config`` builds: whether its head is the spatial
    pyramid (None for a model without that choice, SincNet) and how its ResNet trunk starts
    (None for a model without a trunk, SincNet), as :func:`build_from_config` applies them."""
    accepted = constructor_arguments(config.model)
    spp = config.model_kwargs.get("spp", config.spp) if "spp" in accepted else None
    trunk = config.backbone if "backbone_weights" in accepted else None
    return spp, trunk


def _load_file(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None


def read_checkpoint(path) -> dict:
    """The dict of a checkpoint written by :class:`Trainer` (on the CPU, no model built), for
    resuming; ``CheckpointError`` for a missing, unreadable or foreign file."""
    path = Path(path)
    checkpoint = _load_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint written by sincfb's training (the "
                              "authors' released checkpoints can be evaluated and used to "
                              "predict, not resumed)")
    return checkpoint


def check_classes(checkpoint: dict, classes, path) -> None:
    """``CheckpointError`` unless the checkpoint was trained on exactly these classes."""
    if list(classes) != list(checkpoint["classes"]):
        hint = "; pass --classes with the checkpoint's class order" \
            if checkpoint.get("format") == AUTHORS_FORMAT else ""
        raise CheckpointError(
            f"{path}: trained for {len(checkpoint['classes'])} classes {checkpoint['classes']}, "
            f"but this dataset has {len(classes)} classes {list(classes)}{hint}")


def load_model_state(model, state: dict, path) -> None:
    """``model.load_state_dict(state)``, with a mismatch reported in one line (which model and
    settings the checkpoint holds) instead of PyTorch's list of every differing tensor."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).split("\n")[1:2] or [str(error)]
        raise CheckpointError(f"{path}: the checkpoint's weights do not fit this model "
                              f"({first[0].strip()}); the checkpoint was trained with other "
                              "model settings (e.g. --compact, --model)") from None


def load_checkpoint(path, device="cpu", classes: Optional[list[str]] = None,
                    class_names: Optional[list[str]] = None):
    """``(model, checkpoint dict)`` from a checkpoint written by :class:`Trainer`, or from one of
    the authors' released checkpoints (a ``.tar`` from their main.py or demo.py: a dict with a
    ``state_dict`` entry, or the bare state dict), see :mod:`models.authors`.

    ``class_names`` names the classes of an authors' checkpoint (their order is unpublished;
    default: GTZAN's alphabetical order). With ``classes`` given, a checkpoint trained on other
    classes is refused with a clear message.
    """
    from .authors import authors_state_dict, from_authors_state_dict

    path = Path(path)
    checkpoint = _load_file(path)
    theirs = authors_state_dict(checkpoint)
    if theirs is not None:
        model, checkpoint = from_authors_state_dict(theirs, class_names, checkpoint)
    elif not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: neither a sincfb genre-classifier checkpoint nor the "
                              "authors' MS-SincResNet state dict")
    else:
        config = TrainConfig.from_dict(checkpoint["config"])
        # The weights come from the file: the trunk is not initialised (no ImageNet download).
        kwargs = {k: v for k, v in config.model_kwargs.items() if k != "backbone_weights"}
        model = build_from_config(config.model, len(checkpoint["classes"]), kwargs,
                                  config.sample_rate, config.clip_samples, config.spp)
        load_model_state(model, checkpoint["model_state"], path)
    if classes is not None:
        check_classes(checkpoint, classes, path)
    return model.to(device), checkpoint
