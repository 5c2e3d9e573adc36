"""``mssincresnet``: train, evaluate, demo, predict with, export and plot the genre classifiers."""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
import warnings
from pathlib import Path

from .card import describe_split
from .config import CUTOFFS, SIZES
from .datasets import DATASETS, KINDS

__all__ = ["main", "build_parser"]

PROTOCOLS = ("auto", "cv", "filtered", "predefined")
PREDICT_FORMATS = ("table", "json", "csv")
EXPORT_FORMATS = ("onnx", "torch-export")
DEFAULT_OPSET = 18     # onnxscript's own opset (no conversion); onnxruntime >= 1.14 runs it
DEFAULT_FOLDS = 10
WARMUP_SHARE = 0.25    # a warm-up taking at least this share of the epochs is warned about

DEMO_SETTINGS = {   # the demo's recipe on the synthetic corpus: short, fast, reliable on 2 CPU cores
    "songs_per_genre": 30, "song_seconds": 4.0, "epochs": 12, "batch_size": 16, "lr": 0.005,
    "warmup_epochs": 1, "warmup_lr": 0.001, "halve_every": 4, "clips_per_song": 4,
    "hop_seconds": 0.25, "folds": 5,
}


# the demo's last line: what its synthetic genres can and cannot show
DEMO_SCOPE = ("note: the synthetic genres differ in tempo, drum pattern and timbre; they test the "
              "pipeline end to end, not musical understanding. For results on real recordings "
              "see README.md, section 'Real recordings'.")


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
    group.add_argument("--size", choices=SIZES,
                       help="model size: compact (demo and tests: 0.5-s clips, short filters), "
                       "laptop (real music on a CPU: the paper's 3-s clips and 251/501/1001-tap "
                       "filters, fewer filters and bins, a short schedule, cut-offs that learn), "
                       "paper (the published sizes, for a GPU; default)")
    group.add_argument("--compact", action="store_const", const="compact", dest="size",
                       help="the same as --size compact (default: neither)")
    group.add_argument("--cutoffs", choices=CUTOFFS,
                       help="sinc cut-offs: decay (the recipes: one SGD group, weight decay), "
                       "learn (own group, no weight decay, rate x --cutoff-lr-scale), freeze "
                       "(kept at the mel initialisation)")
    group.add_argument("--cutoff-lr-scale", type=float,
                       help="with --cutoffs learn: the cut-offs' rate over the base rate")
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
    parser.add_argument("--kind", default="auto", choices=KINDS,
                        help="the dataset's layout (auto: detected from the files): "
                        + "; ".join(f"{kind}: {text}" for kind, (_, text) in DATASETS.items()))
    parser.add_argument("--classes", type=_class_list,
                        help="comma-separated class names in the model's output order: fixes the "
                        "dataset's class list (a label or class folder outside it is an error) "
                        "and names the outputs of an authors' checkpoint (default for those: "
                        "GTZAN's alphabetical order, an assumption)")
    parser.add_argument("--cache-dir", help="where decoded audio is cached (default ~/.cache/sincfb)")
    parser.add_argument("--cache-dtype", default="auto", choices=("auto", "float32", "int16"),
                        help="decoded-audio storage (auto: int16 for recordings, float32 otherwise)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows every default: a flag's own value, or for a training setting the values
    of both recipes (a flag left out takes them from ``--recipe``)."""

    settings: dict = {}          # dest -> (paper value, authors value), filled by build_parser

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.dest in self.settings:
            paper, authors = self.settings[action.dest]
            shown = f"default {paper!r}" if paper == authors else \
                f"paper: {paper!r}, authors: {authors!r}"
            return f"{text} ({shown})".replace("%", "%%")
        if action.default not in (None, False, ()):
            return f"{text} (default: %(default)s)"
        return text


def _recipe_defaults() -> dict:
    """``{field: (paper value, authors value)}`` of every training setting."""
    from .config import TrainConfig
    from .recipes import recipe_values

    paper = {**TrainConfig().to_dict(), **recipe_values("paper")}
    authors = {**paper, **recipe_values("authors")}
    return {field: (paper[field], authors[field]) for field in paper if field != "model_kwargs"}


def _version() -> str:
    """'sincfb X.Y.Z' from the installed package's metadata (without importing torch)."""
    from importlib import metadata

    try:
        return f"mssincresnet (sincfb {metadata.version('sincfb')})"
    except metadata.PackageNotFoundError:
        return "mssincresnet (sincfb, not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The ``mssincresnet`` argument parser (sub-commands train, evaluate, demo, predict, export,
    plot).

    Building it imports no torch, so ``--help`` and ``--version`` answer at once."""
    _HelpFormatter.settings = _recipe_defaults()
    parser = argparse.ArgumentParser(prog="mssincresnet", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser = functools.partial(commands.add_parser, formatter_class=_HelpFormatter)

    train = commands.add_parser("train", help="train a genre classifier")
    _add_data_flags(train)
    _add_training_flags(train)
    train.add_argument("--protocol", choices=PROTOCOLS,
                       help="split: k-fold CV, GTZAN's fault-filtered split, or the dataset's own "
                       "(default auto: the dataset's own when every track has one, else CV)")
    train.add_argument("--fold", type=int, help="test fold for --protocol cv (default 0)")
    train.add_argument("--folds", type=int, help=f"number of CV folds (default {DEFAULT_FOLDS})")
    train.add_argument("--all-folds", action="store_true", help="run every CV fold and aggregate")
    train.add_argument("--out", default="runs/train", help="output folder (checkpoints, logs, report)")
    train.add_argument("--resume", nargs="?", const="auto",
                       help="continue the run in OUT from its last.pt (or from the checkpoint "
                       "given) with the settings it was started with")
    train.add_argument("--override", type=_keys, default=(),
                       help="with --resume: comma-separated settings the command line may change "
                       "(e.g. lr,batch_size); any other change of the recipe is refused")
    train.add_argument("--overwrite", action="store_true",
                       help="start a new run in an OUT that holds one; the old run is moved to "
                       "OUT.replaced-<date>-<time>, not deleted")


    evaluate = commands.add_parser("evaluate", help="song-level evaluation of a checkpoint")
    _add_data_flags(evaluate)
    evaluate.add_argument("--checkpoint", required=True,
                          help="a best.pt / last.pt of training, or the authors' released .tar")
    evaluate.add_argument("--split", default="auto", choices=("auto", "test", "valid", "train", "all"),
                          help="auto: the checkpoint's test songs (matched by track name) when the "
                          "dataset has them, else every song it did not train or validate on")
    evaluate.add_argument("--vote", choices=("majority", "mean"), default=None)
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--out", help="folder for evaluation.json and confusion.png (default: "
                          "evaluation-<dataset>-<split> beside the checkpoint, so the run's own "
                          "report and figures are never overwritten)")

    demo = commands.add_parser("demo", help="synthesise a corpus, train the compact model, evaluate")
    demo.add_argument("--out", default=".", help="folder for the report, checkpoint and logs")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=DEMO_SETTINGS["epochs"])
    demo.add_argument("--backend", default=None, help="sincfb backend (default auto)")
    demo.add_argument("--cache-dir")
    demo.add_argument("--no-progress", action="store_true")
    demo.add_argument("--overwrite", action="store_true",
                      help="run in an OUT that holds another (non-demo) training run, moving "
                      "that run aside; an earlier demo run there is replaced without it")
    _add_predict_parser(commands)
    _add_export_parser(commands)
    _add_plot_parser(commands)
    return parser


def _add_predict_parser(commands) -> None:
    """Add the ``predict`` sub-command to the ``mssincresnet`` sub-parsers."""
    p = commands.add_parser("predict", help="classify audio files or folders with a checkpoint",
                            description="Classify every audio file given (folders are searched "
                            "recursively): genre, the genre's vote share and mean probability over "
                            "its clips, and the vote shares of every class.")
    p.add_argument("paths", nargs="+", metavar="FILES_OR_FOLDERS")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint",
                       help="a best.pt / last.pt written by training, or the authors' released .tar")
    model.add_argument("--onnx", help="a model written by 'mssincresnet export' (clip or song "
                       "model), run by onnxruntime: needs neither torch nor sincfb's kernels")
    p.add_argument("--classes", type=_class_list,
                   help="class names of an authors' checkpoint, in output order (default: "
                   "GTZAN's alphabetical order, an assumption)")
    p.add_argument("--format", choices=PREDICT_FORMATS, default="table", help="output format (default table)")
    p.add_argument("--output", help="write the results to this file instead of stdout")
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (memory)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 "
                   "... (--checkpoint only; --onnx runs on the CPU)")
    p.add_argument("--vote", choices=("majority", "mean"),
                   help="song decision from its clips (default: the checkpoint's)")


def _add_export_parser(commands) -> None:
    """Add the ``export`` sub-command to the ``mssincresnet`` sub-parsers."""
    p = commands.add_parser("export", help="export a checkpoint to ONNX or torch.export",
                            description="Export the eval path of a checkpoint: clips (batch, 1, "
                            "samples) -> logits, or with --song a waveform of any length -> "
                            "clips -> logits, mean probability and majority vote. The fused "
                            "sinc banks lower to conv1d, ReLU and pooling; the file is checked "
                            "against eager PyTorch before it is written and records classes, "
                            "audio settings, versions and the model card's summary.")
    p.add_argument("--checkpoint", required=True,
                   help="a best.pt / last.pt written by training, or the authors' released .tar")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx",
                   help="onnx (onnxruntime; pip install 'sincfb[export]') or torch-export (an "
                   "ExportedProgram .pt2 for AOTInductor / ExecuTorch)")
    p.add_argument("--out", help="file to write (default: beside the checkpoint, NAME.onnx or "
                   "NAME.pt2; NAME-song.* with --song)")
    p.add_argument("--song", action="store_true", help="export the song-level model (waveform "
                   "at the checkpoint's sample rate -> its clips -> vote)")
    p.add_argument("--classes", type=_class_list,
                   help="class names of an authors' checkpoint, in output order (default: "
                   "GTZAN's alphabetical order, an assumption)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")


def _add_plot_parser(commands) -> None:
    """Add ``plot filterbank|representation|curves|confusion`` to the ``mssincresnet`` commands."""
    plot = commands.add_parser("plot", help="draw a figure as PNG",
                               description="Draw a figure of a trained model or a run as PNG.")
    kinds = plot.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    for name, text, needs in (
            ("filterbank", "learned cut-offs vs mel initialisation, frequency responses",
             ("checkpoint",)),
            ("representation", "a clip's learned 2D representations beside its log-Mel "
             "spectrogram (paper Fig. 4)", ("checkpoint", "audio")),
            ("curves", "loss and accuracies per epoch (paper Fig. 5)", ("log",)),
            ("confusion", "confusion matrix of an evaluation", ("report",))):
        sub = kinds.add_parser(name, help=text, description=text)
        if "checkpoint" in needs:
            sub.add_argument("--checkpoint", required=True, help="a checkpoint written by training")
        if "audio" in needs:
            sub.add_argument("--audio", required=True, help="an audio file (any format and rate)")
            sub.add_argument("--offset", type=float,
                             help="clip start in seconds (default: the middle of the track)")
        if "log" in needs:
            sub.add_argument("--log", required=True, help="a run's log.csv, or the run folder")
        if "report" in needs:
            sub.add_argument("--report", required=True,
                             help="report.json of train/demo or the JSON written by evaluate")
        sub.add_argument("--out", default=f"{name}.png", help=f"PNG to write (default {name}.png)")


def _keys(text: str) -> tuple[str, ...]:
    return tuple(key.strip().replace("-", "_") for key in text.split(",") if key.strip())


def _settings_from_args(args) -> tuple[dict, set]:
    """The training settings this command line asks for (the recipe, then the --config file,
    then the flags, then what --size and --backend imply), and the keys it sets itself."""
    from .recipes import recipe_config
    from .config import TrainConfig

    from_file = TrainConfig.read_file(args.config) if args.config else {}
    recipe = args.recipe or from_file.get("recipe", "paper")
    given = dict(from_file)
    for field in TrainConfig().to_dict():
        flag = getattr(args, field, None)
        if flag is not None and field != "model_kwargs":
            given[field] = None if flag is OFF else flag
    # as in Python, a clip length of one's own keeps the recipe's look-back share of the clip
    values = {**recipe_config(recipe, **given).to_dict(), "recipe": recipe}
    touched = set(given) | ({"recipe"} if args.recipe else set())
    if getattr(args, "size", None):
        before = dict(values)
        _apply_size(values, args.size, given=set(touched))
        touched |= {"model_kwargs", "sample_rate", "clip_seconds"}
        touched |= {key for key in values if values[key] != before[key]}
        # 'size' is a record (the model_kwargs it implies are compared): an older run resumed
        # with the flag that started it is the same run
        touched.discard("size")
    if getattr(args, "backend", None):
        values["model_kwargs"] = {**values["model_kwargs"], "backend": args.backend}
        touched.add("model_kwargs")
    return values, touched


def _config_from_args(args):
    """The training settings of a new run (:func:`_settings_from_args`)."""
    from .config import TrainConfig

    return TrainConfig.from_dict(_settings_from_args(args)[0])


def _explicit_settings(args) -> dict:
    """Only the settings the command line sets itself: what a resumed run compares with the
    settings saved in its checkpoint."""
    values, touched = _settings_from_args(args)
    return {key: values[key] for key in touched}


def _apply_size(values: dict, size: str, given: set) -> None:
    """The model of ``size`` and its clips, and the size's training settings
    (:data:`models.registry.SIZE_SETTINGS`). A setting the user ``given`` (a flag or the --config
    file) is kept: ``--size compact --clip-seconds 3`` trains on 3-s clips. The hop (unless given)
    becomes half a clip ('paper' keeps the recipe's), and a look-back (unless given) keeps its
    share of the clip."""
    from .registry import SIZE_SETTINGS, size_config

    kwargs = size_config(values["model"], size)
    size_clip = kwargs.pop("clip_samples") / kwargs["sample_rate"]
    size_rate = kwargs.pop("sample_rate")
    values["size"] = size
    values.update({k: v for k, v in SIZE_SETTINGS[size].items() if k not in given})
    clip_seconds = values["clip_seconds"] if "clip_seconds" in given else size_clip
    if "sample_rate" not in given:
        values["sample_rate"] = size_rate
    if "hop_seconds" not in given and size != "paper":
        values["hop_seconds"] = clip_seconds / 2
    if values["frame_lookback_seconds"] is not None and "frame_lookback_seconds" not in given:
        values["frame_lookback_seconds"] *= clip_seconds / values["clip_seconds"]
    values["clip_seconds"] = clip_seconds
    values["model_kwargs"] = {**kwargs, **values["model_kwargs"]}


def _open_corpus(args, config):
    """The dataset of ``args.data``, decoded as ``config`` says (sample rate, fixed duration);
    ``--classes`` fixes its class list, and ``--protocol cv`` ignores a manifest's splits."""
    from .data import load_corpus, open_tracklist

    tracklist = open_tracklist(args.data, "synthetic" if args.data is None else args.kind,
                               args.classes,
                               ignore_splits=getattr(args, "protocol", None) == "cv")
    corpus = load_corpus(tracklist, config.sample_rate, args.cache_dir,
                         progress=not args.no_progress, fixed_samples=config.fixed_samples,
                         storage=getattr(args, "cache_dtype", "auto"))
    return tracklist, corpus


def _report_failures(corpus) -> None:
    if corpus.failures:
        print(f"{len(corpus.failures)} file(s) skipped as unusable:", file=sys.stderr)
        for message in corpus.failures[:20]:
            print(f"  {message}", file=sys.stderr)


def _train_one(config, corpus, splits, out_dir, resume, progress, split_spec=None):
    """Train, then score ``best.pt`` on the test split; the test scores complete its model
    card (inside the checkpoint and ``MODEL_CARD.md``), which training alone cannot know."""
    from .card import add_test_scores
    from .checkpoints import load_checkpoint
    from .train import Trainer

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


def _split_spec(args) -> dict:
    """How the command line asks for the splits (None where it does not say)."""
    return {"protocol": args.protocol, "fold": args.fold, "folds": args.folds}


def _fold_dirs(args) -> dict:
    out = Path(args.out)
    if not args.all_folds:
        return {args.fold or 0: out}
    return {fold: out / f"fold-{fold}" for fold in range(args.folds or DEFAULT_FOLDS)}


def _saved_runs(args, fold_dirs: dict) -> dict:
    """``{fold: (checkpoint path, checkpoint)}`` of the runs ``--resume`` continues; with
    ``--all-folds`` a fold that never started has none and starts afresh."""
    from .checkpoints import read_checkpoint

    if not args.resume:
        return {}
    saved = {}
    for fold, folder in fold_dirs.items():
        path = folder / "last.pt" if args.resume == "auto" else Path(args.resume)
        if path.exists() or not args.all_folds:
            saved[fold] = (path, read_checkpoint(path))
    if not saved:
        raise FileNotFoundError(f"--resume: no last.pt in any fold folder of {args.out}")
    return saved


def _resumed_config(args, saved: dict):
    """The checkpoint's recipe, with only the changes :func:`models.runs.resumed_settings`
    allows; the split the command line asks for must be the checkpoint's."""
    from .config import TrainConfig
    from .runs import RunFolderError, resumed_settings

    path, state = next(iter(saved.values()))
    settings = resumed_settings(state["config"], _explicit_settings(args), args.override,
                                source=str(path))
    stored = state.get("split_spec") or {}
    # 'auto' matches the protocol it resolved to, which the checkpoint records
    asked = {k: v for k, v in _split_spec(args).items()
             if v is not None and k != "fold" and (k, v) != ("protocol", "auto")}
    changed = {k: (stored[k], v) for k, v in asked.items() if k in stored and stored[k] != v}
    if changed:
        raise RunFolderError(f"--resume: {path} was split with "
                             + ", ".join(f"--{k} {old}" for k, (old, _) in changed.items())
                             + "; a resumed run keeps its splits, so drop "
                             + ", ".join(f"--{k}" for k in changed))
    return TrainConfig.from_dict(settings)


def command_train(args) -> int:
    """Train on a dataset (one split or every CV fold) and write the report."""
    from .data import make_splits
    from .evaluate import aggregate_folds
    from .runs import carry_best_checkpoint, prepare_run_folder, splits_from_checkpoint
    from .fileio import atomic_write_text
    from .runtime import resolve_device

    started = time.perf_counter()
    out, fold_dirs = Path(args.out), _fold_dirs(args)
    saved = _saved_runs(args, fold_dirs)
    config = _resumed_config(args, saved) if saved else _config_from_args(args)
    _check_model_flags(args, config)
    resolve_device(config.device)         # a device that is not here fails before any work
    prepare_run_folder(out, args.overwrite, bool(args.resume))
    _warn_about_schedule(config)
    tracklist, corpus = _open_corpus(args, config)
    kept = tracklist.restricted_to(corpus.names)
    spec = _new_split_spec(args, kept)
    reports = []
    for fold, fold_dir in fold_dirs.items():
        path, state = saved.get(fold, (None, None))
        if state is not None:
            carry_best_checkpoint(path, fold_dir)
            splits = splits_from_checkpoint(state, corpus.names, str(path))
            spec = state.get("split_spec") or spec
        else:
            # Selecting on the test fold, as the authors' main.py does, leaves no use for a
            # validation fold: like theirs, the training set is then every other fold.
            splits = make_splits(kept, spec["protocol"], fold, spec.get("folds", 1), config.seed,
                                 validation=config.select_on == "valid")
            if spec["protocol"] == "cv" and fold == min(fold_dirs):
                _warn_about_folds(corpus, spec["folds"])
        fold_spec = {**spec, "fold": fold} if spec["protocol"] == "cv" else dict(spec)
        fold_spec["seed"] = config.seed
        describe_data(corpus, splits, config, fold_spec)
        _warn_about_splits(splits, corpus, fold_spec.get("protocol"))
        _, report = _train_one(config, corpus, splits, fold_dir, path, not args.no_progress,
                               fold_spec)
        report.update(config=config.to_dict(), dataset=corpus.name, split=fold_spec,
                      skipped_files=corpus.failures,
                      wall_seconds=round(time.perf_counter() - started, 1))
        atomic_write_text(fold_dir / "report.json", json.dumps(report, indent=1))
        _write_confusion_figure(report, fold_dir)
        _write_run_figures(fold_dir)
        reports.append(report)
        if "test" in report:
            where = f"fold {fold}" if spec["protocol"] == "cv" else describe_split(fold_spec)
            print(f"{where}: test song accuracy {report['test']['song_accuracy']:.4f}, "
                  f"clip accuracy {report['test']['clip_accuracy']:.4f}")
        print_outputs(fold_dir, report["wall_seconds"])
    if args.all_folds:
        summary = aggregate_folds([r["test"] for r in reports if "test" in r])
        atomic_write_text(out / "cv_report.json", json.dumps(summary, indent=1))
        acc = summary["song_accuracy"]
        print(f"{len(reports)} folds: song accuracy {acc['mean']:.4f} ± {acc['std']:.4f} -> "
              f"{out / 'cv_report.json'}")
    _report_failures(corpus)
    return 0


def _new_split_spec(args, tracklist) -> dict:
    """How a new run splits ``tracklist``: ``{'protocol': 'cv', 'folds': k}``, or only the
    protocol for a split the dataset defines ('predefined', GTZAN's 'filtered'), which has no
    folds: --fold, --folds and --all-folds are then an error rather than ignored."""
    from .data import resolved_protocol

    protocol = resolved_protocol(tracklist, args.protocol or "auto")
    if protocol == "cv":
        return {"protocol": "cv", "folds": args.folds or DEFAULT_FOLDS}
    given = [flag for flag, value in (("--fold", args.fold), ("--folds", args.folds),
                                      ("--all-folds", args.all_folds or None)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: cross-validation flags, but the run uses "
                         f"{describe_split({'protocol': protocol})}, which has no folds; drop "
                         "them, or pass --protocol cv to ignore the dataset's split")
    return {"protocol": protocol}


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


def _warn(message: str) -> None:
    print(f"mssincresnet: warning: {message}", file=sys.stderr)


def _warn_about_schedule(config) -> None:
    """A run that spends a large share (:data:`WARMUP_SHARE`) of its epochs at the warm-up rate
    is almost always a mistake (--epochs 8 with the paper's 5 warm-up epochs)."""
    warmup, epochs = config.warmup_epochs, config.epochs
    if warmup <= 0 or warmup < WARMUP_SHARE * epochs:
        return
    if epochs <= warmup:
        _warn(f"--epochs {epochs} does not exceed the {warmup} warm-up epochs: the whole run "
              f"trains at the warm-up rate {config.warmup_lr:g}, never at --lr {config.lr:g} "
              "(lower --warmup-epochs or raise --epochs)")
    else:
        _warn(f"{warmup} of the {epochs} epochs ({warmup / epochs:.0%}) train at the warm-up "
              f"rate {config.warmup_lr:g} rather than --lr {config.lr:g} (lower "
              "--warmup-epochs or raise --epochs)")


def _check_model_flags(args, config) -> None:
    """A setting the user gives for a part the model lacks cannot be honoured: an error
    (SincNet has neither a spatial pyramid head nor a ResNet trunk; only the sincfb banks of
    MS-SincResNet and SincResNet have a backend), except ``--backbone random``, which is what
    such a model is anyway (a note says so)."""
    from .checkpoints import constructor_arguments, head_and_trunk

    if args.backend and "backend" not in constructor_arguments(config.model):
        raise ValueError(f"--backend {args.backend}: {config.model} has no sincfb filterbank "
                         "layer; leave --backend out")
    spp, trunk = head_and_trunk(config)
    if trunk is None and args.backbone is not None:
        if args.backbone != "random":
            raise ValueError(f"--backbone {args.backbone}: {config.model} has no ResNet trunk "
                             "to initialise; leave --backbone out")
        print_note(f"{config.model} has no ResNet trunk; all its layers start random")
    if spp is None and args.spp:
        raise ValueError(f"--spp: {config.model} has no spatial pyramid pooling head; leave "
                         "--spp out")


def _warn_about_folds(corpus, folds: int) -> None:
    """A class with fewer songs than folds leaves some test folds without it."""
    import numpy as np

    counts = np.bincount(np.asarray(corpus.labels), minlength=len(corpus.classes))
    small = [f"{c} ({n})" for c, n in zip(corpus.classes, counts) if n < folds]
    if small:
        _warn(f"class(es) with fewer songs than the {folds} folds: {', '.join(small)}; some "
              "folds will hold none of them (use fewer --folds)")


def _warn_about_splits(splits, corpus, protocol: str) -> None:
    """Name every class a split lacks (10 folds of an 18-song corpus leave 2 test songs)."""
    import numpy as np

    remedy = "use fewer --folds or more data" if protocol == "cv" else \
        "give each split songs of every class, or use --protocol cv"

    for split in ("train", "valid", "test"):
        indices = np.asarray(splits[split], dtype=np.int64)
        if not len(indices):
            continue
        present = set(np.asarray(corpus.labels)[indices].tolist())
        missing = [c for i, c in enumerate(corpus.classes) if i not in present]
        if missing:
            _warn(f"the {split} split ({len(indices)} songs) holds no song of class(es) "
                  f"{', '.join(missing)}; {remedy}")


def _write_confusion_figure(report, folder) -> None:
    """``confusion.png`` of a report's test scores, when it has them."""
    from .plots import plot_confusion

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
    from .authors import class_order_note
    from .card import checkpoint_summary
    from .evaluate import predict_songs, score
    from .results import print_summary
    from .runs import evaluation_songs
    from .checkpoints import load_checkpoint
    from .config import TrainConfig
    from .fileio import atomic_write_text
    from .runtime import resolve_device

    device = resolve_device(args.device)
    _, state = load_checkpoint(args.checkpoint, "cpu", class_names=args.classes)
    config = TrainConfig.from_dict(state["config"])
    _, corpus = _open_corpus(args, config)
    model, state = load_checkpoint(args.checkpoint, device, corpus.classes, args.classes)
    print_note(class_order_note(state))
    print_summary(checkpoint_summary(state))
    split, indices = evaluation_songs(state, corpus.names, args.split,
                                      same_dataset=state["dataset"] == corpus.name)
    if split == "unseen":
        _warn(f"none of the checkpoint's test songs are in {corpus.name}; scoring its "
              f"{len(indices)} songs that the checkpoint did not train or validate on")
    if not len(indices):
        raise ValueError(f"no song of {corpus.name} is left to evaluate (all were used in training)")
    predictions = predict_songs(model, corpus, indices, config.framing, args.batch_size, device,
                                device.type == "cuda", args.vote or config.vote,
                                progress=not args.no_progress, tie_break=config.tie_break)
    report = score(predictions, corpus.classes)
    report.update(checkpoint=str(args.checkpoint), split=split, dataset=corpus.name,
                  recipe=config.recipe, class_order=state.get("class_order", "recorded"),
                  songs_detail=[p.as_dict(corpus.classes) for p in predictions],
                  skipped_files=corpus.failures)
    out = Path(args.out) if args.out else \
        Path(args.checkpoint).parent / f"evaluation-{corpus.name}-{split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(report, indent=1))
    _write_confusion_figure({"test": report}, out)
    print(f"{split}: {report['songs']} songs, song accuracy {report['song_accuracy']:.4f}, "
          f"clip accuracy {report['clip_accuracy']:.4f}, macro F1 {report['macro_f1']:.4f} -> "
          f"{out / 'evaluation.json'}")
    _report_failures(corpus)
    return 0


def print_note(message) -> None:
    """Print a note for the user on stderr (nothing for None)."""
    if message:
        print(f"mssincresnet: note: {message}", file=sys.stderr)


def _prepare_demo_folder(out: Path, overwrite: bool) -> None:
    """The demo may replace its own earlier run (the same command reproduces it), but a folder
    holding any other training run is protected as ``train`` protects it."""
    from .runs import prepare_run_folder

    try:
        earlier_demo = json.loads((out / "report.json").read_text()).get("demo") is True
    except (OSError, ValueError, AttributeError):
        earlier_demo = False
    if not earlier_demo:
        prepare_run_folder(out, overwrite, resume=False)


def command_demo(args) -> int:
    """Synthesise the corpus, train the compact MS-SincResNet, evaluate held-out songs by vote."""
    from sincfb import filterbanks

    from . import compact_config
    from .config import TrainConfig
    from .data import load_corpus, make_splits, synthetic_tracklist
    from .fileio import atomic_write_text

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
    trainer, report = _train_one(config, corpus, splits, args.out, None, not args.no_progress,
                                 spec)
    report.update(config=config.to_dict(), dataset="synthetic", demo=True,
                  wall_seconds=round(time.perf_counter() - started, 1),
                  sinc_backends={name: bank.resolved_backend(trainer.device.type)
                                 for name, bank in filterbanks(trainer.model)})
    out = Path(args.out)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    _write_confusion_figure(report, out)
    _write_run_figures(out)
    test = report["test"]
    print(f"held-out songs: song accuracy {test['song_accuracy']:.3f} (majority vote over clips), "
          f"clip accuracy {test['clip_accuracy']:.3f}; {report['wall_seconds']:.0f} s in all")
    print_outputs(out, report["wall_seconds"])
    print(DEMO_SCOPE)
    return 0


# sub-command -> (module, handler), imported only when it runs, so that --onnx needs no torch
_COMMANDS = {
    "train": ("cli", "command_train"), "evaluate": ("cli", "command_evaluate"),
    "demo": ("cli", "command_demo"), "predict": ("predict", "command_predict"),
    "predict --onnx": ("onnx_predict", "command_predict_onnx"),
    "export": ("export", "command_export"), "plot": ("plots", "command_plot"),
}


def _handler(args):
    """The function that runs the parsed command."""
    key = "predict --onnx" if args.command == "predict" and args.onnx else args.command
    module, name = _COMMANDS[key]
    return getattr(importlib.import_module(f".{module}", __package__), name)


def _input_errors() -> tuple:
    """Besides ValueError and FileNotFoundError, the errors that mean "fix the input" rather
    than a bug: offline ImageNet weights, once the trunk module is loaded (importing it here
    would load torch for commands that never need it)."""
    trunk = sys.modules.get(f"{__package__}.trunk")
    return (trunk.BackboneWeightsUnavailable,) if trunk else ()


def main(argv=None) -> int:
    """Entry point of the ``mssincresnet`` command."""
    args = build_parser().parse_args(argv)
    try:
        return _handler(args)(args)
    except KeyboardInterrupt:
        print("interrupted; checkpoints on disk are intact", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, *_input_errors()) as error:
        # DataError, CheckpointError, AudioError, ExportError, offline ImageNet weights ...
        print(f"mssincresnet: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:                # a diverged run; its message says what is kept
        print(f"mssincresnet: error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())
