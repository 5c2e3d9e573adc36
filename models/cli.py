"""``mssincresnet``: train, evaluate, demo, predict with and plot the genre classifiers."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

__all__ = ["main", "build_parser"]

DEMO_SETTINGS = {   # the demo's recipe on the synthetic corpus: short, fast, reliable on 2 CPU cores
    "songs_per_genre": 30, "song_seconds": 4.0, "epochs": 12, "batch_size": 16, "lr": 0.005,
    "warmup_epochs": 1, "warmup_lr": 0.001, "halve_every": 4, "clips_per_song": 4,
    "hop_seconds": 0.25, "folds": 5,
}


class _Off:
    """The value of an optional setting turned off on the command line ('none')."""

    def __repr__(self) -> str:
        return "none"


OFF = _Off()


def _seconds_or_none(text: str):
    """A float flag that also accepts 'none' (the setting switched off)."""
    if text.strip().lower() in ("none", "off"):
        return OFF
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds or 'none', got {text!r}") from None


def _class_list(text: str) -> list:
    """--classes: comma-separated class names, in the order of the model's outputs."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected at least two distinct comma-separated class "
                                         f"names, got {text!r}")
    return names


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training recipe (defaults: --recipe, itself 'paper' by "
                                      "default; every value below overrides it)")
    group.add_argument("--recipe", choices=("paper", "authors"),
                       help="paper: the paper's text; authors: their released code (see README)")
    group.add_argument("--config", help="JSON or TOML file of training settings (flags override it)")
    group.add_argument("--model", help="mssincresnet (default), sincresnet, sincnet, melresnet")
    group.add_argument("--compact", action="store_true",
                       help="the small CPU configuration of the model (short clips, few filters)")
    group.add_argument("--backend", help="sincfb backend for the sinc layers (default auto)")
    group.add_argument("--backbone", help="trunk initialisation: imagenet (default; torchvision's "
                       "weights, downloaded once), random, or a local resnet18 .pth file")
    for flag, kind, text in (("--epochs", int, "number of epochs"), ("--batch-size", int, "clips per batch"),
                             ("--lr", float, "base learning rate after warm-up"),
                             ("--warmup-epochs", int, "epochs at the warm-up rate"),
                             ("--warmup-lr", float, "warm-up learning rate"),
                             ("--halve-every", int, "halve the rate every N epochs"),
                             ("--halve-from", int, "count the halvings from this epoch (0: at N, 2N ...)"),
                             ("--weight-decay", float, "SGD weight decay"),
                             ("--momentum", float, "SGD Nesterov momentum"),
                             ("--clips-per-song", int, "random clips drawn per song and epoch"),
                             ("--clip-seconds", float, "clip length"), ("--hop-seconds", float, "clip hop"),
                             ("--gain", float, "amplitude augmentation: x U[1-g, 1+g]"),
                             ("--noise-std", float, "noise level"),
                             ("--audio-scale", float, "multiply the audio by this (32768: int16 scale)"),
                             ("--workers", int, "data-loader workers"),
                             ("--seed", int, "seed of everything random")):
        group.add_argument(flag, type=kind, help=text)
    group.add_argument("--fixed-seconds", type=_seconds_or_none,
                       help="stretch every file to this duration (authors: 30), or none")
    group.add_argument("--frame-lookback-seconds", type=_seconds_or_none,
                       help="the authors' clip layout, [hop*i - b, hop*i - b + clip) (authors: 2), "
                       "or none for clips inside the song")
    for flag, text in (("--song-batches", "batches of whole songs (all their clips)"),
                       ("--spp", "spatial pyramid pooling head (paper) instead of avg pool + fc"),
                       ("--nesterov", "Nesterov momentum")):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
    group.add_argument("--noise", choices=("gaussian", "uniform", "none"), help="noise augmentation")
    group.add_argument("--vote", choices=("majority", "mean"), help="song decision from clips")
    group.add_argument("--tie-break", choices=("probability", "lowest"),
                       help="majority-vote ties: higher mean probability, or lowest class index")
    group.add_argument("--select-on", choices=("valid", "test"),
                       help="epoch kept as best.pt; 'test' (the authors' main.py) is optimistic")
    group.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    group.add_argument("--amp", choices=("auto", "on", "off"), help="bf16 autocast (auto: on GPU)")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="dataset: a GTZAN or ISMIR2004 folder, a folder per "
                        "class, or a CSV manifest (path,label[,split]); omitted: the synthetic corpus")
    parser.add_argument("--kind", default="auto",
                        choices=("auto", "gtzan", "ismir2004", "folder", "manifest", "synthetic"))
    parser.add_argument("--cache-dir", help="where decoded audio is cached (default ~/.cache/sincfb)")
    parser.add_argument("--cache-dtype", default="auto", choices=("auto", "float32", "int16"),
                        help="decoded-audio storage (auto: int16 for recordings, float32 otherwise)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``mssincresnet`` argument parser (sub-commands train, evaluate, demo, predict, plot)."""
    parser = argparse.ArgumentParser(prog="mssincresnet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a genre classifier")
    _add_data_flags(train)
    _add_training_flags(train)
    train.add_argument("--protocol", default="auto", choices=("auto", "cv", "filtered", "predefined"),
                       help="split: k-fold CV, GTZAN's fault-filtered split, or the dataset's own")
    train.add_argument("--fold", type=int, default=0, help="test fold for --protocol cv")
    train.add_argument("--folds", type=int, default=10, help="number of CV folds")
    train.add_argument("--all-folds", action="store_true", help="run every CV fold and aggregate")
    train.add_argument("--out", default="runs/train", help="output folder (checkpoints, logs, report)")
    train.add_argument("--resume", nargs="?", const="auto",
                       help="continue from a checkpoint (default: OUT/last.pt)")

    evaluate = commands.add_parser("evaluate", help="song-level evaluation of a checkpoint")
    _add_data_flags(evaluate)
    evaluate.add_argument("--checkpoint", required=True,
                          help="a best.pt / last.pt of training, or the authors' released .tar")
    evaluate.add_argument("--classes", type=_class_list,
                          help="class names of an authors' checkpoint, in output order "
                          "(default: GTZAN's alphabetical order, an assumption)")
    evaluate.add_argument("--split", default="auto", choices=("auto", "test", "valid", "train", "all"),
                          help="auto: the checkpoint's test split on its own dataset, else all songs")
    evaluate.add_argument("--vote", choices=("majority", "mean"), default=None)
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--out", help="JSON report path (default: beside the checkpoint)")

    demo = commands.add_parser("demo", help="synthesise a corpus, train the compact model, evaluate")
    demo.add_argument("--out", default=".", help="folder for the report, checkpoint and logs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=DEMO_SETTINGS["epochs"])
    demo.add_argument("--backend", default=None, help="sincfb backend (default auto)")
    demo.add_argument("--cache-dir")
    demo.add_argument("--no-progress", action="store_true")
    from .plots import add_plot_parser
    from .predict import add_predict_parser
    add_predict_parser(commands)
    add_plot_parser(commands)
    return parser


def _config_from_args(args):
    """The training settings: the recipe, then the --config file, then the flags."""
    from .recipes import recipe_config
    from .train import TrainConfig

    from_file = TrainConfig.read_file(args.config) if args.config else {}
    recipe = args.recipe or from_file.get("recipe", "paper")
    values = {**recipe_config(recipe).to_dict(), **from_file, "recipe": recipe}
    for field in values:
        flag = getattr(args, field, None)
        if flag is not None and field != "model_kwargs":
            values[field] = None if flag is OFF else flag
    if args.compact:
        _make_compact(values, args)
    if getattr(args, "backend", None):
        values["model_kwargs"] = {**values["model_kwargs"], "backend": args.backend}
    return TrainConfig.from_dict(values)


def _make_compact(values: dict, args) -> None:
    """The compact model and its short clips; the hop (unless given) becomes half a clip, and a
    look-back (unless given) keeps its share of the clip."""
    from . import compact_config

    kwargs = compact_config(values["model"])
    clip_seconds = kwargs.pop("clip_samples") / kwargs["sample_rate"]
    values["sample_rate"] = kwargs.pop("sample_rate")
    if args.hop_seconds is None:
        values["hop_seconds"] = clip_seconds / 2
    if values["frame_lookback_seconds"] is not None and args.frame_lookback_seconds is None:
        values["frame_lookback_seconds"] *= clip_seconds / values["clip_seconds"]
    values["clip_seconds"] = clip_seconds
    values["model_kwargs"] = {**kwargs, **values["model_kwargs"]}


def _open_corpus(args, config):
    """The dataset of ``args.data``, decoded as ``config`` says (sample rate, fixed duration)."""
    from .data import load_corpus, open_tracklist

    tracklist = open_tracklist(args.data, "synthetic" if args.data is None else args.kind)
    corpus = load_corpus(tracklist, config.sample_rate, args.cache_dir,
                         progress=not args.no_progress, fixed_samples=config.fixed_samples,
                         storage=getattr(args, "cache_dtype", "auto"))
    return tracklist, corpus


def _report_failures(corpus) -> None:
    if corpus.failures:
        print(f"{len(corpus.failures)} file(s) skipped as unusable:", file=sys.stderr)
        for message in corpus.failures[:20]:
            print(f"  {message}", file=sys.stderr)


def _train_one(config, corpus, splits, out_dir, resume, progress):
    from .train import Trainer, load_checkpoint

    if resume:
        resume = Path(out_dir) / "last.pt" if resume == "auto" else resume
    trainer = Trainer(config, corpus, splits, out_dir, progress=progress, resume_from=resume)
    trainer.fit()
    best_path = Path(out_dir) / "best.pt"
    model, _ = load_checkpoint(best_path, trainer.device)
    report = {"best_epoch": trainer.best, "splits": {k: int(len(v)) for k, v in splits.items()}}
    if len(splits["test"]):
        report["test"] = trainer.evaluate("test", model)
    return trainer, report


def command_train(args) -> int:
    """Train on a dataset (one split or every CV fold) and write the report."""
    from .data import make_splits
    from .evaluate import aggregate_folds
    from .train import atomic_write_text

    config = _config_from_args(args)
    tracklist, corpus = _open_corpus(args, config)
    out = Path(args.out)
    folds = range(args.folds) if args.all_folds else [args.fold]
    reports = []
    for fold in folds:
        # Selecting on the test fold, as the authors' main.py does, leaves no use for a
        # validation fold: like theirs, the training set is then every other fold.
        splits = make_splits(tracklist.restricted_to(corpus.names), args.protocol, fold,
                             args.folds, config.seed, validation=config.select_on == "valid")
        fold_dir = out / f"fold-{fold}" if args.all_folds else out
        _, report = _train_one(config, corpus, splits, fold_dir, args.resume, not args.no_progress)
        report.update(config=config.to_dict(), dataset=corpus.name, fold=fold,
                      skipped_files=corpus.failures)
        atomic_write_text(fold_dir / "report.json", json.dumps(report, indent=1))
        _write_confusion_figure(report, fold_dir)
        _write_run_figures(fold_dir)
        reports.append(report)
        if "test" in report:
            print(f"fold {fold}: test song accuracy {report['test']['song_accuracy']:.4f}, "
                  f"clip accuracy {report['test']['clip_accuracy']:.4f}")
    if args.all_folds:
        summary = aggregate_folds([r["test"] for r in reports if "test" in r])
        atomic_write_text(out / "cv_report.json", json.dumps(summary, indent=1))
        acc = summary["song_accuracy"]
        print(f"{len(reports)} folds: song accuracy {acc['mean']:.4f} ± {acc['std']:.4f}")
    _report_failures(corpus)
    return 0


def _write_confusion_figure(report, folder) -> None:
    """Best effort: the plotting module arrives with the figures; evaluation never fails on it."""
    try:
        from .plots import plot_confusion
    except ImportError:
        return
    if "test" in report:
        plot_confusion(report["test"], Path(folder) / "confusion.png")


def _write_run_figures(folder) -> None:
    """Training curves and learned filterbank of a run folder; a figure that fails is a warning,
    never a failed run (the checkpoints and report are already on disk)."""
    from .plots import write_run_figures
    try:
        write_run_figures(folder)
    except Exception as error:   # noqa: BLE001 -- any plotting failure must not cost the run
        print(f"mssincresnet: warning: figures for {folder} not drawn: {error}", file=sys.stderr)


def command_evaluate(args) -> int:
    """Evaluate a checkpoint on a dataset; print the scores and write a JSON report."""
    import numpy as np

    from .authors import class_order_note
    from .evaluate import predict_songs, score
    from .train import TrainConfig, atomic_write_text, load_checkpoint, resolve_device

    device = resolve_device(args.device)
    _, state = load_checkpoint(args.checkpoint, "cpu", class_names=args.classes)
    config = TrainConfig.from_dict(state["config"])
    _, corpus = _open_corpus(args, config)
    model, state = load_checkpoint(args.checkpoint, device, corpus.classes, args.classes)
    print_note(class_order_note(state))
    split = args.split
    if split == "auto":
        split = "test" if state["dataset"] == corpus.name and state["splits"]["test"] else "all"
    indices = np.arange(len(corpus)) if split == "all" else np.asarray(state["splits"][split])
    predictions = predict_songs(model, corpus, indices, config.framing, args.batch_size, device,
                                device.type == "cuda", args.vote or config.vote,
                                progress=not args.no_progress, tie_break=config.tie_break)
    report = score(predictions, corpus.classes)
    report.update(checkpoint=str(args.checkpoint), split=split, dataset=corpus.name,
                  recipe=config.recipe, class_order=state.get("class_order", "recorded"),
                  songs_detail=[p.as_dict(corpus.classes) for p in predictions],
                  skipped_files=corpus.failures)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("evaluation.json")
    atomic_write_text(out, json.dumps(report, indent=1))
    _write_confusion_figure({"test": report}, out.parent)
    print(f"{split}: {report['songs']} songs, song accuracy {report['song_accuracy']:.4f}, "
          f"clip accuracy {report['clip_accuracy']:.4f}, macro F1 {report['macro_f1']:.4f} -> {out}")
    _report_failures(corpus)
    return 0


def print_note(message) -> None:
    """Print a note for the user on stderr (nothing for None)."""
    if message:
        print(f"mssincresnet: note: {message}", file=sys.stderr)


def command_demo(args) -> int:
    """Synthesise the corpus, train the compact MS-SincResNet, evaluate held-out songs by vote."""
    from . import compact_config
    from .data import load_corpus, make_splits, synthetic_tracklist
    from .train import TrainConfig, atomic_write_text

    started = time.perf_counter()
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
                         halve_from=s["warmup_epochs"], backbone="random", recipe="demo")
    print("demo: the compact MS-SincResNet from a random trunk (no ImageNet weights, so it runs "
          "offline) on a synthetic corpus; the paper's and the authors' recipes are in the README")
    tracklist = synthetic_tracklist(s["songs_per_genre"], s["song_seconds"], seed=args.seed)
    corpus = load_corpus(tracklist, sample_rate, args.cache_dir, progress=not args.no_progress)
    splits = make_splits(tracklist, "cv", fold=0, folds=s["folds"], seed=args.seed)
    print(f"synthetic corpus: {len(corpus)} songs, {len(corpus.classes)} genres "
          f"({', '.join(corpus.classes)}); train {len(splits['train'])}, valid "
          f"{len(splits['valid'])}, held-out test {len(splits['test'])} songs")
    trainer, report = _train_one(config, corpus, splits, args.out, None, not args.no_progress)
    report.update(config=config.to_dict(), dataset="synthetic",
                  wall_seconds=round(time.perf_counter() - started, 1),
                  sinc_backend=trainer.model.sincNet1.resolved_backend(trainer.device.type)
                  if hasattr(trainer.model, "sincNet1") else None)
    out = Path(args.out)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    _write_confusion_figure(report, out)
    _write_run_figures(out)
    test = report["test"]
    print(f"held-out songs: song accuracy {test['song_accuracy']:.3f} (majority vote over clips), "
          f"clip accuracy {test['clip_accuracy']:.3f}; {report['wall_seconds']:.0f} s in all")
    print(f"wrote {out / 'report.json'}, checkpoint {out / 'best.pt'}, log {out / 'log.csv'}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``mssincresnet`` command."""
    args = build_parser().parse_args(argv)
    from .plots import command_plot
    from .trunk import BackboneWeightsUnavailable
    from .predict import command_predict
    handlers = {"train": command_train, "evaluate": command_evaluate, "demo": command_demo,
                "predict": command_predict, "plot": command_plot}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; checkpoints on disk are intact", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, BackboneWeightsUnavailable) as error:
        # DataError, CheckpointError, AudioError, offline ImageNet weights ...: one clear line
        print(f"mssincresnet: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())
