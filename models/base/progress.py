"""Progress bars on a terminal only: a run whose output goes to a file or a pipe gets none, so a
redirected log holds the run's lines, not thousands of carriage-return updates."""
from __future__ import annotations

import sys

__all__ = ["progress_bar"]


def progress_bar(items, description: str, unit: str, enabled: bool = True, leave: bool = False):
    """``items`` wrapped in a tqdm bar on stderr when ``enabled`` and stderr is a terminal;
    ``items`` itself otherwise."""
    if not (enabled and sys.stderr.isatty()):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit=unit, leave=leave, file=sys.stderr)
