"""Command line of the real-recordings benchmark.

    python -m bench.real_music build --out data/realmusic
    python -m bench.real_music classical data/realmusic/realmusic.csv
    python -m bench.real_music compare data/realmusic/realmusic.csv --seeds 0 1 2
    python -m bench.real_music resplit data/realmusic/realmusic.csv --seed 1
    python -m bench.real_music table bench/results/realmusic-compare-....json

``build`` needs the packages of :data:`bench.real_music.dataset.SOUNDTRACKS` installed
(``apt-get install ...``, see :mod:`bench.real_music.dataset`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the sub-commands build, classical, compare, resplit and table."""
    parser = argparse.ArgumentParser(prog="python -m bench.real_music",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the manifest from the installed packages")
    build.add_argument("--out", type=Path, required=True, help="folder for the manifest and audio")
    build.add_argument("--excerpt-seconds", type=float, default=20.0,
                       help="length of every excerpt (default 20)")
    build.add_argument("--excerpts-per-class", type=int, default=36,
                       help="excerpts each class aims at, spread over its tracks (default 36)")
    build.add_argument("--seed", type=int, default=0, help="seed of the split by track")
    build.add_argument("--min-tracks", type=int, default=5,
                       help="fewest usable tracks a class may have")
    build.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    build.add_argument("--dpkg-dir", type=Path, default=Path("/var/lib/dpkg"),
                       help=argparse.SUPPRESS)
    build.add_argument("--overwrite", action="store_true", help="rebuild an existing manifest")
    classical = commands.add_parser("classical", help="the classical reference on a manifest")
    classical.add_argument("manifest", type=Path, help="realmusic.csv written by build")
    classical.add_argument("--split-seeds", type=int, nargs="*", default=[1, 2],
                           help="also re-split the tracks with these seeds (default 1 2)")
    classical.add_argument("--out", type=Path, help="the JSON (default bench/results/...)")
    resplit = commands.add_parser("resplit", help="write the manifest re-split with another seed")
    resplit.add_argument("manifest", type=Path, help="realmusic.csv written by build")
    resplit.add_argument("--seed", type=int, required=True,
                         help="seed of the new split by track (the classical reference's "
                              "--split-seeds use the same one)")
    compare = commands.add_parser("compare", help="train every configuration and seed")
    compare.add_argument("manifest", type=Path, help="realmusic.csv written by build")
    compare.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                         help="training seeds (default 0 1 2); the split is the manifest's")
    compare.add_argument("--configs", nargs="+", help="configuration names (default: all)")
    compare.add_argument("--configs-file", type=Path,
                         help='JSON of more configurations: '
                              '{"name": {"model": ..., "flags": [...]}}')
    compare.add_argument("--epochs", type=int, help="passed to every run")
    compare.add_argument("--jobs", type=int, default=1,
                         help="runs at a time, each with cpu_count/jobs threads (default 1)")
    compare.add_argument("--gather", action="store_true",
                         help="only read the runs already finished (left out: the others)")
    compare.add_argument("--no-classical", dest="classical", action="store_false",
                         help="skip the classical reference (when runs are split over machines "
                              "or sessions and a later call gathers them)")
    compare.add_argument("--train-args", default="",
                         help="more models-train flags for every run (one quoted string)")
    compare.add_argument("--runs-dir", type=Path, default=Path("runs/realmusic"),
                         help="where the runs' folders and logs go (default runs/realmusic)")
    compare.add_argument("--split-seeds", type=int, nargs="*", default=[1, 2],
                         help="the classical reference also on these re-splits")
    compare.add_argument("--out", type=Path, help="the JSON (default bench/results/...)")
    table = commands.add_parser("table", help="print the markdown table of a results JSON")
    table.add_argument("results", type=Path)
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


def _classical(args, argv) -> int:
    from .classical import classical_reference
    from .compare import dataset_summary, machine_meta, manifest_split, write_results

    results = {"meta": machine_meta(argv), "manifest": str(args.manifest),
               "dataset": dataset_summary(args.manifest), "split": manifest_split(args.manifest),
               "classical": classical_reference(args.manifest, args.split_seeds)}
    _print_classical(results["classical"])
    print(f"wrote {write_results(results, args.out, 'classical')}")
    return 0


def _print_classical(classical: dict) -> None:
    own = classical["manifest_split"]
    print(f"classical reference, the manifest's split: test song accuracy "
          f"{own['test_song_accuracy']:.3f}, track accuracy {own['test_track_accuracy']:.3f} "
          f"(L2 {own['l2']:g}, valid {own['valid_song_accuracy']:.3f})")
    for entry in classical["resplits"]:
        print(f"  re-split seed {entry['split_seed']}: test song accuracy "
              f"{entry['test_song_accuracy']:.3f}, track {entry['test_track_accuracy']:.3f}")


def _compare(args, argv) -> int:
    import shlex

    from .compare import compare, read_configs, write_results

    configs = read_configs(args.configs_file, args.configs)
    extra = (["--epochs", str(args.epochs)] if args.epochs else []) + shlex.split(args.train_args)
    results = compare(args.manifest, configs, args.seeds, args.runs_dir, extra,
                      args.split_seeds, argv=argv, jobs=args.jobs, classical=args.classical,
                      gather=args.gather)
    if args.classical:
        _print_classical(results["classical"])
    print(results["markdown"])
    print(f"wrote {write_results(results, args.out, 'compare')}")
    return 0


def _resplit(args) -> int:
    from .dataset import resplit_manifest

    print(f"wrote {resplit_manifest(args.manifest, args.seed)}")
    return 0


def _table(args, argv) -> int:
    import json

    from .compare import render_markdown

    print(render_markdown(json.loads(args.results.read_text())))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Run the sub-command; a dataset problem is a one-line error."""
    from models.data import DataError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    commands = {"build": lambda a, _: _build(a), "classical": _classical, "compare": _compare,
                "resplit": lambda a, _: _resplit(a), "table": _table}
    try:
        return commands[args.command](args, argv)
    except (DataError, ValueError) as error:
        print(f"python -m bench.real_music: error: {error}", file=sys.stderr)
        return 2
