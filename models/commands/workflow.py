"""The steps the ``train``, ``evaluate`` and ``demo`` commands share: open the dataset, say what a
run trains on, train and test one split, draw the figures, say where the outputs are."""
from __future__ import annotations

import sys
from pathlib import Path

from ..base.messages import warn
from ..training.card import describe_split

__all__ = ["open_corpus", "report_failures", "train_one", "describe_data", "print_outputs",
           "write_confusion_figure", "write_run_figures"]


def open_corpus(args, config):
    """The dataset of ``args.data``, decoded as ``config`` says (sample rate, fixed duration);
    ``--classes`` fixes its class list, and ``--protocol cv`` ignores a manifest's splits."""
    from ..data.cache import load_corpus
    from ..data.tracklists import open_tracklist

    tracklist = open_tracklist(args.data, "synthetic" if args.data is None else args.kind,
                               args.classes,
                               ignore_splits=getattr(args, "protocol", None) == "cv")
    corpus = load_corpus(tracklist, config.sample_rate, args.cache_dir,
                         progress=not args.no_progress, fixed_samples=config.fixed_samples,
                         storage=getattr(args, "cache_dtype", "auto"))
    return tracklist, corpus


def report_failures(corpus) -> None:
    if corpus.failures:
        print(f"{len(corpus.failures)} file(s) skipped as unusable:", file=sys.stderr)
        for message in corpus.failures[:20]:
            print(f"  {message}", file=sys.stderr)


def train_one(config, corpus, splits, out_dir, resume, progress, split_spec=None):
    """Train, then score ``best.pt`` on the test split; the test scores complete its model
    card (inside the checkpoint and ``MODEL_CARD.md``), which training alone cannot know."""
    from ..training.card import add_test_scores
    from ..training.checkpoints import load_checkpoint
    from ..training.trainer import Trainer

    trainer = Trainer(config, corpus, splits, out_dir, progress=progress, resume_from=resume,
                      split_spec=split_spec)
    trainer.fit()
    best_path = Path(out_dir) / "best.pt"
    model, _ = load_checkpoint(best_path, trainer.device)
    report = {"best_epoch": trainer.best, "splits": {k: int(len(v)) for k, v in splits.items()}}
    if len(splits["test"]):
        report["test"] = trainer.evaluate("test", model)
        if trainer.is_main:
            add_test_scores(best_path, report["test"])
    return trainer, report


def describe_data(corpus, splits: dict, config, split_spec: dict) -> None:
    """Print what a run trains on before it starts: classes, songs and clips per split, how
    the songs were split and how many files were skipped."""
    counts = {name: int(len(indices)) for name, indices in splits.items()}
    evaluated = {name: sum(config.framing.count(int(corpus.lengths[int(i)])) for i in indices)
                 for name, indices in splits.items() if name != "train"}
    skipped = (f"; {len(corpus.failures)} file(s) skipped as unusable (listed at the end)"
               if corpus.failures else "")
    print(f"data: {corpus.name}, {len(corpus)} songs in {len(corpus.classes)} classes "
          f"({', '.join(corpus.classes)}){skipped}")
    print(f"split: {describe_split(split_spec)}: train {counts['train']} songs "
          f"({config.clips_per_song} random clip(s) of each per epoch: "
          f"{counts['train'] * config.clips_per_song}), "
          + ", ".join(f"{name} {counts[name]} songs ({evaluated[name]} clips, all evaluated)"
                      for name in ("valid", "test") if counts.get(name))
          + f"; clips of {config.clip_seconds:g} s at {config.sample_rate} Hz, hop "
          f"{config.hop_seconds:g} s")


def print_outputs(folder, wall_seconds: float) -> None:
    """Print where a run's outputs are (those that exist) and its wall time."""
    folder = Path(folder)
    names = [name for name in ("best.pt", "MODEL_CARD.md", "last.pt", "report.json", "log.csv",
                               "curves.png", "filterbank.png", "confusion.png")
             if (folder / name).exists()]
    print(f"wrote {folder}/: {', '.join(names)} ({wall_seconds:.0f} s wall time in all)")


def write_confusion_figure(report, folder) -> None:
    """``confusion.png`` of a report's test scores, when it has them."""
    from ..inference.run_plots import plot_confusion

    if "test" in report:
        plot_confusion(report["test"], Path(folder) / "confusion.png")


def write_run_figures(folder) -> None:
    """Training curves and learned filterbank of a run folder; a figure that fails is a warning,
    never a failed run (the checkpoints and report are already on disk)."""
    from ..inference.run_plots import write_run_figures
    try:
        write_run_figures(folder)
    except Exception as error:   # noqa: BLE001 -- any plotting failure must not cost the run
        warn(f"figures for {folder} not drawn: {error}")
