"""A training run's per-epoch log: ``log.json`` (exact) and ``log.csv`` (for a spreadsheet), both
written atomically after every epoch, and read back for the training-curve figure."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .fileio import atomic_write_text

__all__ = ["write_logs", "read_log_csv"]


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_logs(history: list[dict], folder) -> None:
    """Write ``log.json`` and ``log.csv`` (one row per epoch, 'epoch' first) into ``folder``."""
    folder = Path(folder)
    atomic_write_text(folder / "log.json", json.dumps(history, indent=1))
    columns = sorted({key for row in history for key in row}, key=lambda k: (k != "epoch", k))
    lines = [",".join(columns)] + [",".join(_cell(row.get(c)) for c in columns) for row in history]
    atomic_write_text(folder / "log.csv", "\n".join(lines) + "\n")


def read_log_csv(path) -> list[dict]:
    """Rows of a ``log.csv`` written by :func:`write_logs`, values as floats (NaN where empty);
    ``ValueError`` naming the file for one that is not such a log (text, a cell that is not a
    number, more cells than columns, no 'epoch' column)."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows.append({k: (float(v) if v not in ("", None) else math.nan)
                             for k, v in row.items()})
    except (csv.Error, ValueError, TypeError) as error:   # TypeError: extra cells (a list)
        raise ValueError(f"{path}: not a training log written by mssincresnet "
                         f"({str(error)[:100]})") from None
    if rows and "epoch" not in rows[0]:
        raise ValueError(f"{path}: not a training log written by mssincresnet (no epoch column)")
    return rows
