"""Old path of :mod:`models.inference.export`, kept so that ``from models.export import ...``
(README, bench) keeps working."""
from .base.lazy import moved_module

moved_module(__name__, "models.inference.export")
