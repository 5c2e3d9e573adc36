"""Checkpoint files: the format the trainer writes, the authors' released files, and loading a
model from either with errors that fit on one line. Every file is read as data, never code
(:mod:`models.base.datafiles`).
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import torch

from ..base.datafiles import (EARLIER_FORMAT_TYPES, CheckpointError, check_declared_storages,
                              check_tensors, load_data_file, plain_data)
from ..base.fileio import atomic_torch_save
from .authors import AUTHORS_FORMAT, authors_state_dict, from_authors_state_dict
from .config import TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "AUTHORS_FORMAT", "EARLIER_FORMAT_TYPES", "CheckpointError",
           "build_from_config", "constructor_arguments", "head_and_trunk", "plain_data",
           "save_checkpoint", "load_data_file", "check_declared_storages", "check_tensors",
           "read_checkpoint", "check_classes", "load_model_state", "load_checkpoint"]

CHECKPOINT_FORMAT = "sincfb-genre/1"


def build_from_config(name: str, num_classes: int, model_kwargs: dict, sample_rate: int,
                      clip_samples: int, spp: Optional[bool] = None,
                      backbone: Optional[str] = None):
    """Instantiate a model of the models package, passing the clip geometry, the head (``spp``)
    and the trunk initialisation (``backbone``: 'imagenet', 'random', a path or None = random)
    where the model accepts them and ``model_kwargs`` does not set them."""
    from ..nets.catalog import build_model

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
    from ..nets.catalog import MODELS, canonical_name

    return set(inspect.signature(MODELS[canonical_name(name)]).parameters)


def head_and_trunk(config: TrainConfig) -> tuple[Optional[bool], Optional[str]]:
    """``(spp, trunk)`` of the model ``config`` builds: whether its head is the spatial
    pyramid (None for a model without that choice, SincNet) and how its ResNet trunk starts
    (None for a model without a trunk, SincNet), as :func:`build_from_config` applies them."""
    accepted = constructor_arguments(config.model)
    spp = config.model_kwargs.get("spp", config.spp) if "spp" in accepted else None
    trunk = config.backbone if "backbone_weights" in accepted else None
    return spp, trunk


def save_checkpoint(state: dict, path) -> None:
    """Write ``state`` (made :func:`plain_data`) to ``path`` atomically."""
    atomic_torch_save(plain_data(state), path)


# What resuming reads besides the weights and settings, and the type each entry must have
_RESUME_FIELDS = {"optimizer": dict, "epoch": int, "step": int, "partial": dict, "history": list,
                  "best": dict, "torch_rng": torch.Tensor}
_PARTIAL_KEYS = ("loss", "correct", "seen", "seconds")


def _check_run_fields(state: dict, path) -> None:
    """``CheckpointError`` naming ``path`` unless the entries a resumed run continues from have
    the types the trainer writes (a damaged file fails here, not epochs later)."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    for key, kind in _RESUME_FIELDS.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or \
                (kind is int and value < 0):
            raise CheckpointError(f"{path}: its {key!r} entry is missing or not a "
                                  f"{'non-negative ' if kind is int else ''}{kind.__name__}; "
                                  "the file cannot resume a run")
    if not all(number(state["partial"].get(key)) for key in _PARTIAL_KEYS) or \
            not all(isinstance(row, dict) for row in state["history"]) or \
            not isinstance(state["best"].get("epoch"), int) or \
            not isinstance(state.get("best_scores", {}), dict):
        raise CheckpointError(f"{path}: its training progress (partial, history, best) is "
                              "damaged; the file cannot resume a run")


def read_checkpoint(path) -> dict:
    """The dict of a checkpoint written by :class:`Trainer` (on the CPU, no model built), for
    resuming; ``CheckpointError`` for a missing, unreadable, foreign or damaged file."""
    path = Path(path)
    checkpoint = load_data_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint written by sincfb's training (the "
                              "authors' released checkpoints can be evaluated and used to "
                              "predict, not resumed)")
    _checked_config(checkpoint, path)
    _check_run_fields(checkpoint, path)
    return checkpoint


def _checked_config(checkpoint: dict, path) -> TrainConfig:
    """The settings of a checkpoint in the project's format, after checking that its classes,
    weights and settings are what the trainer writes (``CheckpointError`` naming the file)."""
    classes = checkpoint.get("classes")
    if not isinstance(classes, list) or len(classes) < 1 or not all(
            isinstance(c, str) and 0 < len(c) <= 200 and c.isprintable() for c in classes):
        raise CheckpointError(f"{path}: its class list is missing or not a list of names")
    check_tensors(checkpoint.get("model_state"), path)
    names = checkpoint.get("split_names")
    if not _split_lists(checkpoint.get("splits"), int) or \
            not (names is None or _split_lists(names, str)) or \
            not isinstance(checkpoint.get("split_spec") or {}, dict):
        raise CheckpointError(f"{path}: its record of the train / valid / test split is damaged")
    if not isinstance(checkpoint.get("config"), dict):
        raise CheckpointError(f"{path}: its training settings are missing")
    try:
        return TrainConfig.from_dict(checkpoint["config"])
    except ValueError as error:
        raise CheckpointError(f"{path}: its training settings are not valid ({error})") from None


def _split_lists(value, kind: type) -> bool:
    """Whether ``value`` maps splits ('train', 'valid', 'test', each optional) to lists of
    ``kind`` (track positions: non-negative integers; track names: strings)."""
    def fits(item) -> bool:
        return type(item) is kind and (kind is str or item >= 0)

    return isinstance(value, dict) and set(value) <= {"train", "valid", "test"} and all(
        isinstance(items, list) and all(fits(item) for item in items) for items in value.values())


# Memory a model may hold beyond the weights its checkpoint stores (buffers computed from its
# settings, such as a mel filterbank); more means settings that do not fit the weights.
_DERIVED_BYTES = 64 << 20


def _model_from_record(checkpoint: dict, path):
    """The model a project checkpoint describes, with its weights. It is first built on the
    meta device, where it allocates nothing, and checked against the weights the file really
    holds: settings that ask for a larger model (a 10^9-wide layer) are refused before any
    memory is taken."""
    config = _checked_config(checkpoint, path)
    # The weights come from the file: the trunk is not initialised (no ImageNet download).
    kwargs = {k: v for k, v in config.model_kwargs.items() if k != "backbone_weights"}
    state = checkpoint["model_state"]

    def build():
        try:
            return build_from_config(config.model, len(checkpoint["classes"]), kwargs,
                                     config.sample_rate, config.clip_samples, config.spp)
        except (ValueError, TypeError) as error:       # a constructor refusing its arguments
            raise CheckpointError(f"{path}: its model settings are not valid ({error})") from None

    try:
        with torch.device("meta"):
            skeleton = build()
    except RuntimeError:        # a model that computes values at construction: build it for real
        skeleton = None
    if skeleton is not None:
        with warnings.catch_warnings():       # copying into meta tensors is a no-op, as meant
            warnings.simplefilter("ignore")
            load_model_state(skeleton, state, path)
        _check_derived_size(skeleton, state, path)
    model = build()
    load_model_state(model, state, path)
    return model


def _check_derived_size(skeleton, state: Mapping, path) -> None:
    """``CheckpointError`` when the model (built on the meta device) would hold more than
    ``_DERIVED_BYTES`` beyond the weights of ``state``."""
    needed = sum(t.numel() * t.element_size()
                 for t in (*skeleton.parameters(), *skeleton.buffers()))
    stored = sum(t.numel() * t.element_size() for t in state.values())
    if needed > stored + _DERIVED_BYTES:
        raise CheckpointError(f"{path}: its settings build a model of {needed / 2 ** 20:.0f} MiB "
                              f"around {stored / 2 ** 20:.0f} MiB of weights")


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
    ``state_dict`` entry, or the bare state dict), see :mod:`models.training.authors`.

    ``class_names`` names the classes of an authors' checkpoint (their order is unpublished;
    default: GTZAN's alphabetical order). With ``classes`` given, a checkpoint trained on other
    classes is refused with a clear message.
    """
    path = Path(path)
    checkpoint = load_data_file(path)
    theirs = authors_state_dict(checkpoint)
    if theirs is not None:
        check_tensors(theirs, path)
        try:
            model, checkpoint = from_authors_state_dict(theirs, class_names, checkpoint)
        except CheckpointError as error:          # its messages say what, this says which file
            raise CheckpointError(f"{path}: {error}") from None
    elif not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: neither a sincfb genre-classifier checkpoint nor the "
                              "authors' MS-SincResNet state dict")
    else:
        model = _model_from_record(checkpoint, path)
    if classes is not None:
        check_classes(checkpoint, classes, path)
    return model.to(device), checkpoint
