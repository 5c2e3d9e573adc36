"""Old path of :mod:`models.training.checkpoints`, kept so that ``from models.checkpoints import ...``
(README, bench) keeps working."""
from .base.lazy import moved_module

moved_module(__name__, "models.training.checkpoints")
