"""``mssincresnet train``: train on a dataset (one split or every CV fold), resume a run, and
warn about settings that will work but probably not as meant."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..base.messages import note, warn
from ..training.card import describe_split
from .settings import config_from_args, explicit_settings
from .workflow import (describe_data, open_corpus, print_outputs, report_failures, train_one,
                       write_confusion_figure, write_run_figures)

__all__ = ["DEFAULT_FOLDS", "WARMUP_SHARE", "command_train"]

DEFAULT_FOLDS = 10


WARMUP_SHARE = 0.25    # a warm-up taking at least this share of the epochs is warned about


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
    from ..training.checkpoints import read_checkpoint

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
    """The checkpoint's recipe, with only the changes :func:`models.training.runs.resumed_settings`
    allows; the split the command line asks for must be the checkpoint's."""
    from ..training.config import TrainConfig
    from ..training.runs import RunFolderError, resumed_settings

    path, state = next(iter(saved.values()))
    settings = resumed_settings(state["config"], explicit_settings(args), args.override,
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
    from ..data.splits import make_splits
    from ..evaluation.scoring import aggregate_folds
    from ..training.runs import carry_best_checkpoint, prepare_run_folder, splits_from_checkpoint
    from ..base.fileio import atomic_write_text
    from ..base.runtime import resolve_device

    started = time.perf_counter()
    out, fold_dirs = Path(args.out), _fold_dirs(args)
    saved = _saved_runs(args, fold_dirs)
    config = _resumed_config(args, saved) if saved else config_from_args(args)
    _check_model_flags(args, config)
    resolve_device(config.device)         # a device that is not here fails before any work
    prepare_run_folder(out, args.overwrite, bool(args.resume))
    _warn_about_schedule(config)
    tracklist, corpus = open_corpus(args, config)
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
        _, report = train_one(config, corpus, splits, fold_dir, path, not args.no_progress,
                               fold_spec)
        report.update(config=config.to_dict(), dataset=corpus.name, split=fold_spec,
                      skipped_files=corpus.failures,
                      wall_seconds=round(time.perf_counter() - started, 1))
        atomic_write_text(fold_dir / "report.json", json.dumps(report, indent=1))
        write_confusion_figure(report, fold_dir)
        write_run_figures(fold_dir)
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
    report_failures(corpus)
    return 0


def _new_split_spec(args, tracklist) -> dict:
    """How a new run splits ``tracklist``: ``{'protocol': 'cv', 'folds': k}``, or only the
    protocol for a split the dataset defines ('predefined', GTZAN's 'filtered'), which has no
    folds: --fold, --folds and --all-folds are then an error rather than ignored."""
    from ..data.splits import resolved_protocol

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


def _warn_about_schedule(config) -> None:
    """A run that spends a large share (:data:`WARMUP_SHARE`) of its epochs at the warm-up rate
    is almost always a mistake (--epochs 8 with the paper's 5 warm-up epochs)."""
    warmup, epochs = config.warmup_epochs, config.epochs
    if warmup <= 0 or warmup < WARMUP_SHARE * epochs:
        return
    if epochs <= warmup:
        warn(f"--epochs {epochs} does not exceed the {warmup} warm-up epochs: the whole run "
              f"trains at the warm-up rate {config.warmup_lr:g}, never at --lr {config.lr:g} "
              "(lower --warmup-epochs or raise --epochs)")
    else:
        warn(f"{warmup} of the {epochs} epochs ({warmup / epochs:.0%}) train at the warm-up "
              f"rate {config.warmup_lr:g} rather than --lr {config.lr:g} (lower "
              "--warmup-epochs or raise --epochs)")


def _check_model_flags(args, config) -> None:
    """A setting the user gives for a part the model lacks cannot be honoured: an error
    (SincNet has neither a spatial pyramid head nor a ResNet trunk; only the sincfb banks of
    MS-SincResNet and SincResNet have a backend), except ``--backbone random``, which is what
    such a model is anyway (a note says so)."""
    from ..training.checkpoints import constructor_arguments, head_and_trunk

    if args.backend and "backend" not in constructor_arguments(config.model):
        raise ValueError(f"--backend {args.backend}: {config.model} has no sincfb filterbank "
                         "layer; leave --backend out")
    spp, trunk = head_and_trunk(config)
    if trunk is None and args.backbone is not None:
        if args.backbone != "random":
            raise ValueError(f"--backbone {args.backbone}: {config.model} has no ResNet trunk "
                             "to initialise; leave --backbone out")
        note(f"{config.model} has no ResNet trunk; all its layers start random")
    if spp is None and args.spp:
        raise ValueError(f"--spp: {config.model} has no spatial pyramid pooling head; leave "
                         "--spp out")


def _warn_about_folds(corpus, folds: int) -> None:
    """A class with fewer songs than folds leaves some test folds without it."""
    import numpy as np

    counts = np.bincount(np.asarray(corpus.labels), minlength=len(corpus.classes))
    small = [f"{c} ({n})" for c, n in zip(corpus.classes, counts) if n < folds]
    if small:
        warn(f"class(es) with fewer songs than the {folds} folds: {', '.join(small)}; some "
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
            warn(f"the {split} split ({len(indices)} songs) holds no song of class(es) "
                  f"{', '.join(missing)}; {remedy}")
