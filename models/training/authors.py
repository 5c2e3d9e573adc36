"""The authors' released MS-SincResNet checkpoints (GitHub PeiChunChang/MS-SincResNet).

Their main.py saves, every epoch, ``torch.save({'epoch', 'state_dict', 'train_loss',
'train_acc'})`` to ``checkpoint_<epoch>.tar``; their demo.py loads ``MS-SincResNet.tar`` and reads
its ``['state_dict']``. The state dict is that of their ``MS_SincResNet`` (models.py): keys
``layerNorm.*`` of shape (1, 48000), ``sincNet{1,2,3}.{0,1}.*`` and ``resnet.model.*``, which
:class:`models.MSSincResNet` with ``spp=False`` has too. This module recognises such a file (the
wrapped dict or a bare state dict) and builds the matching model and a checkpoint record that
carries the ``authors`` recipe, so ``mssincresnet predict`` and ``evaluate`` run on it directly.

Their class order is not published anywhere (their folders are named by integers). It is assumed
to be GTZAN's alphabetical genre order, the order of ``models.data.readers.gtzan.GTZAN_GENRES``; pass the real
order as ``class_names`` (``--classes`` on the command line) when it is known.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Optional

import torch

from ..base.datafiles import CheckpointError
from ..base.messages import error_detail
from ..data.readers.gtzan import GTZAN_GENRES

__all__ = ["AUTHORS_FORMAT", "RELEASED_ARCHITECTURE", "ASSUMED_CLASSES", "authors_state_dict",
           "from_authors_state_dict", "class_order_note"]

AUTHORS_FORMAT = "authors-release"       # a checkpoint of the authors' main.py / demo.py
# What their models.py fixes and their state dict does not record (the filter lengths live in
# non-buffer tensors, the pooling size in a module without parameters).
RELEASED_ARCHITECTURE = MappingProxyType({"kernel_sizes": (251, 501, 1001), "pool_bins": 1024,
                                          "sample_rate": 16000})
_MARKERS = ("layerNorm.weight", "sincNet1.0.low_hz_", "resnet.model.fc.weight")
ASSUMED_CLASSES = GTZAN_GENRES          # their order is unpublished: GTZAN's alphabetical one


def authors_state_dict(checkpoint) -> Optional[Mapping]:
    """The authors' state dict inside ``checkpoint`` (their wrapped dict, or the bare state dict),
    or None when ``checkpoint`` is something else."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if isinstance(checkpoint, Mapping) and all(
            isinstance(checkpoint.get(key), torch.Tensor) and checkpoint[key].dim() >= 1
            for key in _MARKERS):
        return checkpoint
    return None


def from_authors_state_dict(state: Mapping, class_names=None, wrapper=None):
    """``(model, checkpoint record)`` for one of the authors' state dicts.

    The model is ``MSSincResNet(spp=False)`` sized from the state dict (classes from ``fc``,
    filters from ``low_hz_``, clip length from the LayerNorm) and :data:`RELEASED_ARCHITECTURE`,
    loaded with ``strict=True``. The record has this project's checkpoint fields: ``config`` (the
    ``authors`` recipe at that clip length), ``classes`` (``class_names`` or the assumed GTZAN
    order), ``class_order`` ('given' or 'assumed'), ``epoch`` (theirs, when the file has it),
    ``dataset`` None and empty ``splits``.
    """
    from ..nets.architectures.mssincresnet import MSSincResNet
    from .recipes import recipe_config

    num_classes, clip_samples, num_filters = (_marker_size(state, key) for key in (
        "resnet.model.fc.weight", "layerNorm.weight", "sincNet1.0.low_hz_"))
    classes = list(class_names or ASSUMED_CLASSES)
    if len(classes) != num_classes:
        raise CheckpointError(f"the authors' checkpoint has {num_classes} outputs, but "
                              f"{len(classes)} class names were given: {classes}")
    arch = dict(RELEASED_ARCHITECTURE)
    try:
        config = recipe_config("authors", clip_seconds=clip_samples / arch["sample_rate"],
                               sample_rate=arch.pop("sample_rate"),
                               model_kwargs={**arch, "num_filters": num_filters})
        model = MSSincResNet(num_classes, spp=False, clip_samples=clip_samples,
                             **config.model_kwargs, sample_rate=config.sample_rate)
    except ValueError as error:     # sizes their network cannot have (a 0-sample LayerNorm ...)
        raise CheckpointError(f"the authors' state dict does not fit their released network: "
                              f"{error}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"the authors' state dict does not fit their released network: "
                              f"{error_detail(error)}") from None
    epoch = wrapper.get("epoch") if isinstance(wrapper, Mapping) else None
    record = {"format": AUTHORS_FORMAT, "config": config.to_dict(), "classes": classes,
              "class_order": "given" if class_names else "assumed", "dataset": None,
              "epoch": int(epoch) if isinstance(epoch, (int, torch.Tensor)) else None,
              "splits": {"train": [], "valid": [], "test": []}}
    return model, record


# The size each marker tensor gives, read from the dimension their network puts it in: the
# classes from fc.weight's rows, the clip from the LayerNorm's last axis, the filters from low_hz_.
_MARKER_AXES = {"resnet.model.fc.weight": (2, 0), "layerNorm.weight": (None, -1),
                "sincNet1.0.low_hz_": (None, 0)}


def _marker_size(state: Mapping, key: str) -> int:
    """The size marker ``key`` gives (see ``_MARKER_AXES``), or ``CheckpointError`` when it is
    not a tensor of the right rank with at least one element."""
    rank, axis = _MARKER_AXES[key]
    tensor = state[key]
    if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0 or \
            (rank is not None and tensor.dim() != rank) or tensor.numel() == 0:
        raise CheckpointError(f"the authors' state dict holds {key} as "
                              f"{getattr(tensor, 'shape', type(tensor).__name__)}, not a "
                              "non-empty tensor their network has")
    return int(tensor.shape[axis])


def class_order_note(record: Mapping) -> Optional[str]:
    """A line for the user when an authors' checkpoint's class order was assumed, else None."""
    if record.get("class_order") != "assumed":
        return None
    return ("the authors' checkpoint does not record its class order; assuming GTZAN's "
            f"alphabetical order ({', '.join(record['classes'])}). Pass --classes to set it")
