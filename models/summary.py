"""Old path of :mod:`models.nets.summary`, kept so that ``from models.summary import ...`` and
``python -m models.summary`` keep working."""
from .base.lazy import moved_module

_module = moved_module(__name__, "models.nets.summary")

if __name__ == "__main__":
    raise SystemExit(_module.main())
