"""Checkpoint files: the format the trainer writes, the authors' released files, and loading a
model from either with errors that fit on one line.

A checkpoint is data, never code. Every file is read with ``torch.load(weights_only=True)``:
PyTorch's restricted unpickler rebuilds tensors and plain containers and refuses anything that
would import or call Python code, and sincfb then refuses the file in one line. No option turns
this off. What the trainer writes holds only plain data (:func:`plain_data`); checkpoints of
earlier versions load through the short allow-list :data:`EARLIER_FORMAT_TYPES`.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import pickle
import pickletools
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .config import TrainConfig
from .fileio import atomic_torch_save
from .messages import error_detail

__all__ = ["CHECKPOINT_FORMAT", "AUTHORS_FORMAT", "EARLIER_FORMAT_TYPES", "CheckpointError",
           "build_from_config", "constructor_arguments", "head_and_trunk", "plain_data",
           "save_checkpoint", "load_data_file", "check_declared_storages", "check_tensors",
           "read_checkpoint", "check_classes", "load_model_state", "load_checkpoint"]

CHECKPOINT_FORMAT = "sincfb-genre/1"
AUTHORS_FORMAT = "authors-release"       # a checkpoint of the authors' main.py / demo.py


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (wrong file, other classes, other model).

    The message is one line: the text of a parser's exception that it quotes (pickle's spans
    two lines) has its line breaks replaced by spaces."""

    def __init__(self, message: str):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)))


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


#: The only types besides plain data that a checkpoint may hold. The command line never wrote
#: any other (tests/fixtures/release-sincnet.pt, written before this list existed, needs none),
#: but before model cards passed the settings through JSON (commit e965f6d) the trainer stored
#: what a Python caller gave it unconverted: a path as ``TrainConfig.backbone``, numpy integers
#: in ``split_spec``. Loading these builds a path or a number from its parts and runs nothing
#: else; they are made plain on loading, so a resumed run writes plain data.
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]     # numpy's rebuilder of a pickled scalar
EARLIER_FORMAT_TYPES = (
    pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath,
    np.dtype, *{type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")},
    # one function, named so by files of numpy 1.x and of numpy 2.x:
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
    (_NUMPY_SCALAR, "numpy._core.multiarray.scalar"),
)
_PLAIN = (bool, int, float, str)
# pickle instructions that import or call Python code: a file that needs them is refused as such
_CODE_OPCODES = {op.code.encode("latin-1")[0] for op in pickletools.opcodes
                 if op.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ",
                                "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4")}
_CODE_MESSAGE = re.compile(r"GLOBAL |unrecognized function|new object|Can only build|is blocked"
                           r"|must be imported")


def plain_data(value, where: str = "the checkpoint"):
    """``value`` as the data a weights-only load reads back: tensors, numbers, strings, bools,
    None, and lists, tuples and dicts of them. numpy scalars and arrays become numbers and lists,
    paths strings, dataclasses dicts; anything else is a ``TypeError`` naming where it is.
    Containers that need no change are returned as they are (a state dict keeps its metadata)."""
    if value is None or type(value) in _PLAIN or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_data(dataclasses.asdict(value), where)
    if isinstance(value, (list, tuple)):
        items = [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if type(value) in (list, tuple) and all(a is b for a, b in zip(items, value)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        items = {plain_data(k, where): plain_data(v, f"{where}[{k!r}]") for k, v in value.items()}
        unchanged = len(items) == len(value) and all(
            new_key is key and new is old
            for (new_key, new), (key, old) in zip(items.items(), value.items()))
        if type(value) in (dict, OrderedDict) and unchanged:
            return value
        return items
    raise TypeError(f"{where} holds a {type(value).__module__}.{type(value).__qualname__}; a "
                    "checkpoint holds only tensors, numbers, strings, bools, None, lists and dicts")


def save_checkpoint(state: dict, path) -> None:
    """Write ``state`` (made :func:`plain_data`) to ``path`` atomically."""
    atomic_torch_save(plain_data(state), path)


def _first_line(error: Exception) -> str:
    """The error's type and :func:`error_detail`: which parser failed matters here."""
    detail = error_detail(error)
    return detail if detail == type(error).__name__ else f"{type(error).__name__}: {detail}"


def _refused(path: Path, error: pickle.UnpicklingError) -> str:
    """The one-line message for a file PyTorch's restricted unpickler stopped: code it would
    have had to import or call, or else a corrupt stream. Only the facts are taken from
    PyTorch's message, never its advice (which is to switch the weights-only mode off)."""
    text = str(error)
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand and int(operand.group(1)) not in _CODE_OPCODES or \
            not operand and not _CODE_MESSAGE.search(text):
        what = f"pickle instruction {operand.group(1)}" if operand else "pickle data"
        return f"{path}: not a readable checkpoint (unsupported or corrupt {what})"
    named = re.search(r"GLOBAL (\S+)|function (<[^>]*>)|got (<[^>]*>)", text)
    asked = next((g for g in named.groups() if g), "") if named else ""
    return (f"{path}: refused: the file holds Python objects that could run code when loaded"
            f"{f' ({asked})' if asked else ''}; sincfb reads checkpoints as data only and does "
            "not execute them")


def load_data_file(path):
    """The contents of a file written by ``torch.save``, loaded as data on the CPU
    (``weights_only=True``, :data:`EARLIER_FORMAT_TYPES` allowed) and made :func:`plain_data`.

    ``CheckpointError`` in one line for a missing or unreadable file, and for a file that holds
    Python objects that could run code: those are refused, never executed.
    """
    path = Path(path)
    check_declared_storages(path)
    try:
        with torch.serialization.safe_globals(list(EARLIER_FORMAT_TYPES)), \
                warnings.catch_warnings():
            # its advice to file an issue about the protocol is not for our users
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            contents = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as error:
        raise CheckpointError(_refused(path, error)) from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(error)})") \
            from None
    try:
        return plain_data(contents, str(path))
    except (TypeError, RecursionError) as error:    # a torch.dtype, a list nested 10^4 deep ...
        raise CheckpointError(f"{path}: not a checkpoint of plain data ({_first_line(error)})") \
            from None


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


def check_declared_storages(path) -> None:
    """``CheckpointError`` when a zip checkpoint's pickle declares a storage of more elements
    than its record in the zip holds bytes: ``torch.load`` allocates what the pickle declares
    before it reads the record, so one damaged number would size an allocation (the deep fuzz
    run saw 23 GB for a 46 MB file). The pickle is read with :mod:`pickletools`, which executes
    nothing; files that are not zips (the legacy format) are left to ``torch.load``."""
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename.rsplit("/data/", 1)[-1]: info.file_size
                     for info in archive.infolist() if "/data/" in info.filename}
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            data = archive.read(pickles[0]) if pickles else b""
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError, NotImplementedError):
        return                             # not a readable zip: torch.load says what it is
    limit = Path(path).stat().st_size
    for key, numel in _pickled_storages(data):
        if numel > min(sizes.get(key, 0), limit):
            raise CheckpointError(f"{path}: storage {key[:20]!r} declares {numel} elements, but "
                                  f"the file holds {sizes.get(key, 0)} bytes for it")


def _pickled_storages(data: bytes) -> list[tuple[str, int]]:
    """``(key, numel)`` of every ``('storage', type, key, location, numel)`` persistent id in a
    pickle, found by following the opcodes' stack effects (pickletools; nothing runs)."""
    frames, found = [[]], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE", "FRAME", "PROTO", "STOP"):
                continue                   # no effect on the stack
            if pickletools.markobject in op.stack_before:
                items = frames.pop() if len(frames) > 1 else []
                del frames[-1][len(frames[-1]) - (len(op.stack_before) - 1):]
            else:
                items = frames[-1][len(frames[-1]) - len(op.stack_before):]
                del frames[-1][len(frames[-1]) - len(op.stack_before):]
            if op.name == "MARK":
                frames.append([])
                continue
            if op.name == "BINPERSID" and items and isinstance(items[0], list) and \
                    len(items[0]) == 5 and isinstance(items[0][4], int) and \
                    isinstance(items[0][2], str):
                found.append((items[0][2], items[0][4]))
            value = items if op.name == "TUPLE" else arg
            frames[-1].extend([value] * len(op.stack_after))
    except (ValueError, IndexError, KeyError):     # a damaged pickle: torch.load reports it
        pass
    return found


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


def check_tensors(state, path) -> None:
    """``CheckpointError`` unless ``state`` maps names to tensors that each hold their own data.

    A tensor saved as a stride-0 view (``torch.zeros(1).expand(10**9)``) claims more elements
    than the file stores; its shape must not size a model."""
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: its weights are not a dict of named tensors")
    for name, tensor in state.items():
        if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
            raise CheckpointError(f"{path}: tensor {name[:60]!r} of shape {tuple(tensor.shape)} "
                                  "claims more elements than the file stores")


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
    ``state_dict`` entry, or the bare state dict), see :mod:`models.authors`.

    ``class_names`` names the classes of an authors' checkpoint (their order is unpublished;
    default: GTZAN's alphabetical order). With ``classes`` given, a checkpoint trained on other
    classes is refused with a clear message.
    """
    from .authors import authors_state_dict, from_authors_state_dict

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
