"""``mssincresnet demo``: synthesise a corpus, train the compact MS-SincResNet, evaluate."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .workflow import (describe_data, print_outputs, train_one, write_confusion_figure,
                       write_run_figures)

__all__ = ["DEMO_SETTINGS", "DEMO_SCOPE", "command_demo"]

DEMO_SETTINGS = {   # the demo's recipe on the synthetic corpus: short, fast, reliable on 2 CPU cores
    "songs_per_genre": 30, "song_seconds": 4.0, "epochs": 12, "batch_size": 16, "lr": 0.005,
    "warmup_epochs": 1, "warmup_lr": 0.001, "halve_every": 4, "clips_per_song": 4,
    "hop_seconds": 0.25, "folds": 5,
}


# the demo's last line: what its synthetic genres can and cannot show
DEMO_SCOPE = ("note: the synthetic genres differ in tempo, drum pattern and timbre; they test the "
              "pipeline end to end, not musical understanding. For results on real recordings "
              "see README.md, section 'Real recordings'.")


def _prepare_demo_folder(out: Path, overwrite: bool) -> None:
    """The demo may replace its own earlier run (the same command reproduces it), but a folder
    holding any other training run is protected as ``train`` protects it."""
    from ..training.runs import prepare_run_folder

    try:
        earlier_demo = json.loads((out / "report.json").read_text()).get("demo") is True
    except (OSError, ValueError, AttributeError):
        earlier_demo = False
    if not earlier_demo:
        prepare_run_folder(out, overwrite, resume=False)


def command_demo(args) -> int:
    """Synthesise the corpus, train the compact MS-SincResNet, evaluate held-out songs by vote."""
    from sincfb import filterbanks

    from ..nets.catalog import compact_config
    from ..training.config import TrainConfig
    from ..data.cache import load_corpus
    from ..data.readers.synthetic import synthetic_tracklist
    from ..data.splits import make_splits
    from ..base.fileio import atomic_write_text

    started = time.perf_counter()
    _prepare_demo_folder(Path(args.out), args.overwrite)
    s = DEMO_SETTINGS
    kwargs = compact_config("mssincresnet")
    sample_rate, clip_samples = kwargs.pop("sample_rate"), kwargs.pop("clip_samples")
    if args.backend:
        kwargs["backend"] = args.backend
    config = TrainConfig(model="mssincresnet", model_kwargs=kwargs, sample_rate=sample_rate,
                         clip_seconds=clip_samples / sample_rate, hop_seconds=s["hop_seconds"],
                         epochs=args.epochs, batch_size=s["batch_size"], lr=s["lr"],
                         warmup_epochs=s["warmup_epochs"], warmup_lr=s["warmup_lr"],
                         halve_every=s["halve_every"], clips_per_song=s["clips_per_song"],
                         seed=args.seed, device="cpu" if args.backend == "reference" else "auto",
                         # the demo's own schedule counts halvings from the end of its warm-up,
                         # and its trunk starts random: no download, the same run as ever
                         halve_from=s["warmup_epochs"], backbone="random", recipe="demo",
                         size="compact")
    print("demo: the compact MS-SincResNet from a random trunk (no ImageNet weights, so it runs "
          "offline) on a synthetic corpus; the paper's and the authors' recipes are in the README")
    tracklist = synthetic_tracklist(s["songs_per_genre"], s["song_seconds"], seed=args.seed)
    corpus = load_corpus(tracklist, sample_rate, args.cache_dir, progress=not args.no_progress)
    splits = make_splits(tracklist, "cv", fold=0, folds=s["folds"], seed=args.seed)
    spec = {"protocol": "cv", "folds": s["folds"], "fold": 0, "seed": args.seed}
    describe_data(corpus, splits, config, spec)
    trainer, report = train_one(config, corpus, splits, args.out, None, not args.no_progress,
                                 spec)
    report.update(config=config.to_dict(), dataset="synthetic", demo=True,
                  wall_seconds=round(time.perf_counter() - started, 1),
                  sinc_backends={name: bank.resolved_backend(trainer.device.type)
                                 for name, bank in filterbanks(trainer.model)})
    out = Path(args.out)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    write_confusion_figure(report, out)
    write_run_figures(out)
    test = report["test"]
    print(f"held-out songs: song accuracy {test['song_accuracy']:.3f} (majority vote over clips), "
          f"clip accuracy {test['clip_accuracy']:.3f}; {report['wall_seconds']:.0f} s in all")
    print_outputs(out, report["wall_seconds"])
    print(DEMO_SCOPE)
    return 0
