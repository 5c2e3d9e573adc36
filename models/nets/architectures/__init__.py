"""One module per network; each registers its model(s) (:mod:`models.nets.registry`).

Importing this package imports every module in it, so a new network is found by adding its
module here, without a list to edit.
"""
from ...base.lazy import import_submodules

import_submodules(__name__, __path__)
