"""Command line of the real-recordings benchmark.

    python -m bench.real_music build --out /work/data/realmusic
    python -m bench.real_music classical /work/data/realmusic/realmusic.csv
    python -m bench.real_music compare /work/data/realmusic/realmusic.csv --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the three sub-commands."""
    parser = argparse.ArgumentParser(prog="python -m bench.real_music", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the manifest from the installed packages")
    build.add_argument("--out", type=Path, required=True, help="folder for the manifest and audio")
    build.add_argument("--excerpt-seconds", type=float, default=20.0)
    build.add_argument("--excerpts-per-class", type=int, default=36)
    build.add_argument("--seed", type=int, default=0, help="seed of the split by track")
    build.add_argument("--min-tracks", type=int, default=5,
                       help="fewest usable tracks a class may have")
    build.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    build.add_argument("--dpkg-dir", type=Path, default=Path("/var/lib/dpkg"), help=argparse.SUPPRESS)
    build.add_argument("--overwrite", action="store_true", help="rebuild an existing manifest")
    return parser


def _build(args) -> int:
    from .dataset import MANIFEST_NAME, build_dataset

    info = build_dataset(args.out, root=args.root, dpkg_dir=args.dpkg_dir,
                         excerpt_seconds=args.excerpt_seconds,
                         excerpts_per_class=args.excerpts_per_class, seed=args.seed,
                         min_tracks=args.min_tracks, overwrite=args.overwrite)
    for label, counts in info["per_class"].items():
        print(f"{label}: " + ", ".join(f"{k} {v:g}" for k, v in counts.items()))
    totals = info["totals"]
    print(f"{totals['tracks']} tracks ({totals['source_seconds'] / 3600:.2f} h), "
          f"{totals['excerpts']} excerpts; skipped: "
          + (", ".join(f"{k} {v['count']}" for k, v in info["skipped"].items()) or "none"))
    print(f"wrote {args.out / MANIFEST_NAME}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Run the sub-command; a dataset problem is a one-line error."""
    from models.data import DataError

    args = build_parser().parse_args(argv)
    try:
        return {"build": _build}[args.command](args)
    except DataError as error:
        print(f"python -m bench.real_music: error: {error}", file=sys.stderr)
        return 2
