"""One module per dataset layout; each registers its reader (:mod:`models.data.registry`).

Importing this package imports every module in it, so a new layout is found by adding its
module here, without a list to edit.
"""
from ...base.lazy import import_submodules

import_submodules(__name__, __path__)
