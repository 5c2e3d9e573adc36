"""Old path of :mod:`models.data.audio`, kept so that ``from models.audio import ...``
(README, bench) keeps working."""
from .base.lazy import moved_module

moved_module(__name__, "models.data.audio")
