"""How training treats the sinc cut-offs, and how far they have moved.

The cut-offs ``low_hz_`` and ``band_hz_`` are parameters in Hz, tens to thousands in size,
whose gradients are tiny next to the trunk's: with one SGD parameter group at the recipe's rate
they barely move, and weight decay (1e-4) pulls every band towards 0 Hz by the same factor. The
``cutoffs`` setting of :class:`models.training.config.TrainConfig` chooses:

- ``decay``: the published recipes, one group for every parameter (the cut-offs get the base rate
  and weight decay like any weight);
- ``learn``: the cut-offs get their own optimiser group, without weight decay and at
  ``cutoff_lr_scale`` times the base rate, so the classification gradient moves them;
- ``freeze``: the cut-offs stay at their mel initialisation (no gradient, not in the optimiser).

Their names and shapes never change, so checkpoints keep the state-dict keys of the authors' code
and of the fused op. :func:`cutoff_shift` measures how far each bank has moved from the mel
initialisation, in Hz and in mel, for the per-epoch log and the model card.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sincfb import sinc_layers
from sincfb.filters import hz_to_mel

from ..base.choices import CUTOFFS

__all__ = ["cutoff_parameters", "parameter_groups", "cutoff_shift", "shift_summary"]


def cutoff_parameters(model: nn.Module) -> list[nn.Parameter]:
    """``low_hz_`` and ``band_hz_`` of every sinc layer of ``model``, in module order."""
    return [p for _, layer in sinc_layers(model) for p in (layer.low_hz_, layer.band_hz_)]


def parameter_groups(model: nn.Module, mode: str, lr_scale: float = 1.0) -> list[dict]:
    """The optimiser's parameter groups for cut-off treatment ``mode`` (see the module doc).

    Every group carries ``lr_scale``, the factor the schedule's rate is multiplied by for it.
    ``freeze`` also switches the cut-offs' gradients off. Empty groups are left out (a model
    without sinc layers, or with only cut-offs, still gets a valid optimiser).
    """
    if mode not in CUTOFFS:
        raise ValueError(f"cutoffs must be one of {CUTOFFS}, got {mode!r}")
    if mode == "decay":
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    cutoffs = cutoff_parameters(model)
    own = {id(p) for p in cutoffs}
    groups = [{"params": [p for p in model.parameters() if id(p) not in own], "lr_scale": 1.0}]
    if mode == "freeze":
        for p in cutoffs:
            p.requires_grad_(False)
    else:
        groups.append({"params": cutoffs, "weight_decay": 0.0, "lr_scale": float(lr_scale),
                       "name": "cutoffs"})
    return [g for g in groups if g["params"]]


def _edges(layer, initial: bool) -> np.ndarray:
    """Both cut-offs of every filter of ``layer``, (2K,) float64 Hz: now, or at the mel
    initialisation."""
    low, high = layer.initial_cutoffs_hz() if initial else layer.cutoffs_hz()
    return torch.cat([low, high]).double().cpu().numpy()


def cutoff_shift(model: nn.Module) -> dict[str, float]:
    """How far every sinc bank's cut-offs (low and high edges of every filter) are from their
    mel initialisation: ``{'cutoffs_<bank>_mean_hz', ..._max_hz, ..._mean_mel, ..._max_mel}``
    (absolute differences, averaged or maximised over the 2K edges). Empty without sinc layers."""
    row = {}
    for name, layer in sinc_layers(model):
        now, start = _edges(layer, False), _edges(layer, True)
        hz = np.abs(now - start)
        mel = np.abs(hz_to_mel(now) - hz_to_mel(start))
        row.update({f"cutoffs_{name}_mean_hz": float(hz.mean()),
                    f"cutoffs_{name}_max_hz": float(hz.max()),
                    f"cutoffs_{name}_mean_mel": float(mel.mean()),
                    f"cutoffs_{name}_max_mel": float(mel.max())})
    return row


def shift_summary(row: dict) -> dict[str, dict[str, float]]:
    """``{bank: {'mean_hz', 'max_hz', 'mean_mel', 'max_mel'}}`` from the ``cutoffs_*`` entries of
    a log row (:func:`cutoff_shift`)."""
    banks: dict[str, dict[str, float]] = {}
    for key, value in row.items():
        if key.startswith("cutoffs_"):
            bank, stat, unit = key[len("cutoffs_"):].rsplit("_", 2)
            banks.setdefault(bank, {})[f"{stat}_{unit}"] = value
    return banks
