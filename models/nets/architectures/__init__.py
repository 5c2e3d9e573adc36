"""One module per network; each registers its model(s) (:mod:`models.nets.registry`).

Importing this package imports every module in it, so a new network is found by adding its
module here, without a list to edit.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
