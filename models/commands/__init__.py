"""One module per command of ``mssincresnet`` (:mod:`models.cli` parses and dispatches)."""
