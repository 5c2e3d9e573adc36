"""How a package offers the names of its modules without importing them first, how an old
module path keeps working after its module moved, and how a folder of self-registering modules
is loaded whole.

The first two keep ``import models`` and the command line's ``--help`` free of torch: a name is imported
on first use.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Mapping
from types import ModuleType

__all__ = ["lazy_exports", "moved_module", "import_submodules"]


def lazy_exports(package: str, table: Mapping[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps each exported name to the
    module (relative to ``package``) that defines it, imported when the name is first used."""
    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__


def moved_module(old: str, new: str) -> ModuleType:
    """Make the module path ``old`` name the module ``new`` (the same module object, so that
    every name, private ones included, is found at both); returns it. Run as a script
    (``old`` is '__main__'), nothing is aliased."""
    module = importlib.import_module(new)
    if old != "__main__":
        sys.modules[old] = module
    return module


def import_submodules(package: str, path) -> None:
    """Import every module of ``package`` (whose ``__path__`` is ``path``): the modules of a
    folder that register themselves when imported (dataset readers, networks) are all found,
    without a list to edit when one is added."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
