"""Files written by ``torch.save``, read as data, never code.

Every file is read with ``torch.load(weights_only=True)``: PyTorch's restricted unpickler
rebuilds tensors and plain containers and refuses anything that would import or call Python
code, and sincfb then refuses the file in one line. No option turns this off. What the trainer
writes holds only plain data (:func:`plain_data`); checkpoints of earlier versions load through
the short allow-list :data:`EARLIER_FORMAT_TYPES`. Besides checkpoints, the trunk's ImageNet
weights given as a file are read here.
"""
from __future__ import annotations

import dataclasses
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

import numpy as np
import torch

from .messages import error_detail

__all__ = ["CheckpointError", "EARLIER_FORMAT_TYPES", "plain_data", "load_data_file",
           "check_declared_storages", "check_tensors"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (wrong file, other classes, other model).

    The message is one line: the text of a parser's exception that it quotes (pickle's spans
    two lines) has its line breaks replaced by spaces."""

    def __init__(self, message: str):
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)))


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
