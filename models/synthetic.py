"""Old path of :mod:`models.data.synthetic`, kept so that ``from models.synthetic import ...``
(README, bench) keeps working."""
from .base.lazy import moved_module

moved_module(__name__, "models.data.synthetic")
