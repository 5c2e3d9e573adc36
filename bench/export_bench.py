"""W4 through onnxruntime: one 30-s song classified by the exported models against eager PyTorch.

Usage: ``python -m bench.export_bench [--size paper|compact] [--threads 2] [--repeats 5]
[--out PATH]`` (needs ``pip install -e '.[export]'``). MS-SincResNet (authors' head, random
weights) is saved as a checkpoint, exported to ONNX twice, and the three ways of classifying a song
are timed in interleaved rounds on the same song:

- ``eager``: the ``mssincresnet predict --checkpoint`` path (``models.inference.predict.load_classifier``:
  trunk BatchNorms folded, channels-last, ``backend='auto'``; ``classify_track``, batches of 32);
- ``ort-clips``: the exported clip model through ``models.inference.onnx_predict`` (the ``predict --onnx``
  path: numpy clips, batches of 32, numpy majority vote);
- ``ort-song``: the exported song model (waveform in, clips and vote in the graph, one run).

Each row has the median of ``--repeats`` timed calls after one warm-up call, all its times and its
ratio to eager; the JSON's meta has the machine (``bench.machine.cpu_info``), versions and the
command. Every implementation must pick the same class, or the run fails.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from bench.common import SAMPLE_RATE, package_version, run_metadata, write_json_atomic
from bench.model_bench import SIZES

__all__ = ["IMPLS", "main", "measure", "save_checkpoint"]

IMPLS = ("eager", "ort-clips", "ort-song")
NUM_CLASSES = 10
EVAL_BATCH = 32


def save_checkpoint(folder: Path, size_name: str) -> Path:
    """A checkpoint of MS-SincResNet at ``size_name`` (random weights, authors' head), as
    training writes it, so that export and predict load it through their public paths."""
    from models import MSSincResNet
    from models.training.checkpoints import CHECKPOINT_FORMAT, save_checkpoint as write_checkpoint
    from models.training.config import TrainConfig
    from models.nets.catalog import compact_config

    kwargs = {} if size_name == "paper" else compact_config("mssincresnet")
    torch.manual_seed(0)
    model = MSSincResNet(num_classes=NUM_CLASSES, spp=False, **kwargs)
    size = SIZES[size_name]
    config = TrainConfig(spp=False, backbone="random", model_kwargs=kwargs,
                         clip_seconds=size.clip_samples / SAMPLE_RATE,
                         hop_seconds=size.hop_samples / SAMPLE_RATE)
    path = folder / f"{size_name}.pt"
    write_checkpoint({"format": CHECKPOINT_FORMAT, "config": config.to_dict(),
                      "classes": [f"class{i}" for i in range(NUM_CLASSES)],
                      "model_state": model.state_dict(), "dataset": None, "splits": {}}, path)
    return path


def build_steps(checkpoint: Path, threads: int) -> tuple[dict[str, Callable], dict]:
    """The three ways of classifying a song, each a function of the waveform returning the
    winning class, and the export results (relative errors, seconds)."""
    from models.inference.export import export_classifier
    from models.inference.onnx_predict import load_onnx_classifier
    from models.inference.predict import classify_track, load_classifier

    exports, sessions = {}, {}
    for kind in ("clips", "song"):
        out = checkpoint.with_name(f"{checkpoint.stem}-{kind}.onnx")
        started = time.perf_counter()
        result = export_classifier(checkpoint, out, "onnx", song=kind == "song")
        exports[kind] = {"seconds": time.perf_counter() - started,
                         "relative_error": result["relative_error"]}
        sessions[kind] = load_onnx_classifier(out, threads=threads)
    eager = load_classifier(checkpoint, "cpu")
    clips, whole = sessions["clips"], sessions["song"]
    steps = {"eager": lambda wave: classify_track(eager, wave, EVAL_BATCH)[0],
             "ort-clips": lambda wave: clips.song_decision(wave, "majority", EVAL_BATCH)[0],
             "ort-song": lambda wave: whole.song_decision(wave, "majority", EVAL_BATCH)[0]}
    return steps, exports


def measure(steps: dict[str, Callable], song: np.ndarray, repeats: int) -> list[dict]:
    """One warm-up call each, then ``repeats`` rounds, every implementation once per round."""
    winners = {name: step(song) for name, step in steps.items()}
    if len(set(winners.values())) != 1:
        raise RuntimeError(f"the implementations disagree on the song's class: {winners}")
    seconds = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step(song)
            seconds[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return [{"workload": "W4", "impl": name, "seconds": seconds[name], "median_s": median,
             "ratio_to_eager": median / medians["eager"], "winner": winners[name]}
            for name, median in medians.items()]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m bench.export_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("paper", "compact"), default="paper")
    p.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, help="JSON file (default: printed only)")
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be at least 1")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark, print a line per implementation, write the JSON if asked."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        import onnxruntime
    except ImportError:
        print("onnxruntime is not installed: pip install -e '.[export]'", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    song = (0.1 * np.random.default_rng(2).standard_normal(
        int(size.song_seconds * SAMPLE_RATE))).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="sincfb-export-bench-") as folder:
        steps, exports = build_steps(save_checkpoint(Path(folder), args.size), args.threads)
        rows = measure(steps, song, args.repeats)
    meta = {**run_metadata("bench.export_bench", argv, threads=args.threads,
                           versions={"onnxruntime": onnxruntime.__version__,
                                     "onnx": package_version("onnx"),
                                     "onnxscript": package_version("onnxscript")}),
            "size": args.size, "song_seconds": size.song_seconds,
            "hop_samples": size.hop_samples, "exports": exports}
    for row in rows:
        print(f"W4 {row['impl']:10s} median {row['median_s']:7.2f} s  x{row['ratio_to_eager']:.2f} "
              f"of eager  (all: {', '.join(f'{s:.2f}' for s in row['seconds'])})")
    if args.out:
        write_json_atomic(args.out, {"meta": meta, "rows": rows})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
