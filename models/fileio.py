"""Old path of :mod:`models.base.fileio`, kept so that ``from models.fileio import ...``
(README, bench) keeps working."""
from .base.lazy import moved_module

moved_module(__name__, "models.base.fileio")
