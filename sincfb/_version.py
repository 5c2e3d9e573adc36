"""The package's version (pyproject.toml says the same), in a module of its own so that the
backends can read it without importing the package's top level."""
__version__ = "0.1.0"
