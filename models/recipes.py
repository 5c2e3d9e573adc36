"""Old path of :mod:`models.training.recipes`, kept so that ``from models.recipes import ...`` and
``python -m models.recipes`` keep working."""
from .base.lazy import moved_module

_module = moved_module(__name__, "models.training.recipes")

if __name__ == "__main__":
    raise SystemExit(_module.main())
