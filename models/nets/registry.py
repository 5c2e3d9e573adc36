"""Where every model registers itself: :func:`register_model` decorates the model's class in its
own module, with the function that gives its constructor arguments at each size beside it
(``compact``, ``laptop``; ``paper`` is the model's own defaults) and the rows it adds to the
parameter table (:mod:`models.nets.summary`).

:mod:`models.nets.catalog` loads every module of :mod:`models.nets.architectures`, so adding a
model is one new module there, its tests and the README's table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

__all__ = ["ModelEntry", "register_model", "registered_models"]

#: ``sizes(size, table)``: the constructor arguments (besides the clip's sample rate and length,
#: which every model takes from ``table``) of the model at ``size``, from that size's shared
#: ``table`` (:data:`models.nets.catalog.COMPACT`, :data:`~models.nets.catalog.LAPTOP`)
SizeFunction = Callable[[str, Mapping[str, Any]], dict]


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: its registry name (its class name in lower case), its class, its
    size function (None: it has no compact or laptop configuration), its rows of the parameter
    table as ``(label, constructor arguments)``, and its place in listings."""

    name: str
    model: type
    sizes: Optional[SizeFunction]
    summary: tuple
    order: int


_MODELS: dict[str, ModelEntry] = {}


def register_model(sizes: Optional[SizeFunction] = None, summary=(), order: int = 100):
    """Class decorator registering a model under its class name in lower case."""
    def register(model: type) -> type:
        name = model.__name__.lower()
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(name, model, sizes, tuple(summary), order)
        return model
    return register


def registered_models() -> list[ModelEntry]:
    """The models registered so far, in listing order (``order``, then name)."""
    return sorted(_MODELS.values(), key=lambda entry: (entry.order, entry.name))
