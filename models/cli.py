"""``mssincresnet``: train, evaluate, demo, predict with, export and plot the genre classifiers."""
# The argument parsers and the dispatch only: each command runs in its own module of
# models.commands, imported when it runs, so that --help loads no torch.
from __future__ import annotations

import argparse
import functools
import importlib
import sys
import warnings

from .base.choices import (CUTOFFS, DEFAULT_OPSET, EXPORT_FORMATS, PREDICT_FORMATS, PROTOCOLS,
                           SIZES)
from .base.messages import error
from .commands.demo import DEMO_SETTINGS
from .commands.settings import OFF
from .commands.train import DEFAULT_FOLDS
from .data.tracklists import DATASETS, KINDS

__all__ = ["main", "build_parser"]


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
    group.add_argument("--model", help="a registered model: mssincresnet (default), sincresnet, "
                       "sincnet, melresnet, or one added in models/nets/architectures/ (an "
                       "unknown name is refused with the list of registered ones)")
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
                             ("--mixup", float, "mixup's Beta(a, a) parameter a (0: off)"),
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
                        + "; ".join(f"{kind}: {text}" for kind, text in DATASETS.items()))
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
    from .training.config import TrainConfig
    from .training.recipes import recipe_values

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


# sub-command -> (its module in models.commands, handler), imported only when it runs, so that
# --onnx needs no torch
_COMMANDS = {
    "train": ("train", "command_train"), "evaluate": ("evaluate", "command_evaluate"),
    "demo": ("demo", "command_demo"), "predict": ("predict", "command_predict"),
    "predict --onnx": ("predict", "command_predict_onnx"),
    "export": ("export", "command_export"), "plot": ("plot", "command_plot"),
}


def _handler(args):
    """The function that runs the parsed command."""
    key = "predict --onnx" if args.command == "predict" and args.onnx else args.command
    module, name = _COMMANDS[key]
    return getattr(importlib.import_module(f".commands.{module}", __package__), name)


def _input_errors() -> tuple:
    """Besides ValueError and FileNotFoundError, the errors that mean "fix the input" rather
    than a bug: offline ImageNet weights, once the trunk module is loaded (importing it here
    would load torch for commands that never need it)."""
    trunk = sys.modules.get(f"{__package__}.nets.trunk")
    return (trunk.BackboneWeightsUnavailable,) if trunk else ()


def main(argv=None) -> int:
    """Entry point of the ``mssincresnet`` command."""
    args = build_parser().parse_args(argv)
    try:
        return _handler(args)(args)
    except KeyboardInterrupt:
        print("interrupted; checkpoints on disk are intact", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, *_input_errors()) as problem:
        # DataError, CheckpointError, AudioError, ExportError, offline ImageNet weights ...
        error(str(problem))
        return 2
    except FloatingPointError as problem:                # a diverged run; its message says what is kept
        error(str(problem))
        return 3


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())
