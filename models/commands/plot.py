"""``mssincresnet plot``: one figure of a checkpoint, a run's log or an evaluation report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..base.messages import error_detail

__all__ = ["command_plot"]


def command_plot(args) -> int:
    """Draw the requested figure; a missing or unusable input raises (``main`` exits with 2)."""
    from ..inference.plots import plot_filterbank, plot_representation
    from ..inference.run_plots import plot_confusion, plot_training_curves

    if args.figure == "filterbank":
        out = plot_filterbank(args.checkpoint, args.out)
    elif args.figure == "representation":
        out = plot_representation(args.checkpoint, args.audio, args.out, args.offset)
    elif args.figure == "curves":
        out = plot_training_curves(args.log, args.out)
    else:
        report = Path(args.report)
        if not report.is_file():
            raise FileNotFoundError(f"{report}: no such report")
        try:
            out = plot_confusion(json.loads(report.read_bytes().decode("utf-8")), args.out)
        except (ValueError, RecursionError) as error:   # RecursionError: JSON nested too deep
            raise ValueError(f"{report}: not a usable report "
                             f"({error_detail(error)})") from None
    print(f"wrote {out}", file=sys.stderr)
    return 0
