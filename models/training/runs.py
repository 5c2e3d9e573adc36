"""Run folders: never overwritten by accident, resumed only with the recipe they were started with.

A run folder holds what ``mssincresnet train`` writes (``last.pt``, ``best.pt``, ``log.csv``,
``report.json``, ``fold-*/``). Starting a new run there is refused unless ``--overwrite`` is
given, and then the old run is moved aside, never deleted. ``--resume`` continues a run with the
settings saved in its checkpoint: a flag that would change the results is an error naming the
keys, unless ``--override`` names them, and the splits are the checkpoint's own songs, looked up
by track name, never recomputed.
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

__all__ = ["RunFolderError", "RUN_FILES", "held_run_files", "prepare_run_folder",
           "RESUMABLE_CHANGES", "resumed_settings", "splits_from_checkpoint", "split_names",
           "evaluation_songs", "carry_best_checkpoint"]

RUN_FILES = ("last.pt", "best.pt", "log.csv", "log.json", "report.json", "cv_report.json")

# Settings a resumed run may change without --override: they do not change what is learned
# (epochs only extends or shortens the schedule, whose rate depends on the epoch number alone).
RESUMABLE_CHANGES = ("epochs", "workers", "device", "eval_batch_size")


class RunFolderError(ValueError):
    """A run folder that would be overwritten, or a resume that would change the run's recipe."""


def held_run_files(folder) -> list[str]:
    """The files of a training run in ``folder`` (also inside ``fold-*`` sub-folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [name for name in RUN_FILES if (folder / name).exists()]
    for fold in sorted(folder.glob("fold-*")):
        found += [f"{fold.name}/{name}" for name in RUN_FILES if (fold / name).exists()]
    return found


def prepare_run_folder(folder, overwrite: bool, resume: bool, log=print) -> Optional[Path]:
    """Make ``folder`` ready for a new run, or refuse.

    A folder holding a run is refused unless ``resume`` (continue it) or ``overwrite``; with
    ``overwrite`` it is renamed to ``<folder>.replaced-<date>-<time>`` and that path returned.
    """
    folder = Path(folder)
    held = held_run_files(folder)
    if resume or not held:
        return None
    if not overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise RunFolderError(
            f"{folder} already holds a training run ({shown}); continue it with --resume, or "
            "pass --overwrite to start a new run there (the old one is then moved aside, not "
            "deleted), or choose another --out")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = folder.with_name(f"{folder.name}.replaced-{stamp}")
    counter = 1
    while aside.exists():
        aside = folder.with_name(f"{folder.name}.replaced-{stamp}-{counter}")
        counter += 1
    os.replace(folder, aside)
    log(f"--overwrite: the previous run in {folder} was moved to {aside}")
    return aside



def carry_best_checkpoint(resumed: Path, folder) -> None:
    """Copy ``best.pt`` from the folder of the checkpoint being resumed into ``folder`` when the
    run continues elsewhere: otherwise a resumed run whose epochs never beat the saved best
    would end without a ``best.pt`` to test. Nothing happens when ``folder`` already has one."""
    from ..base.fileio import atomic_write_bytes

    source, target = Path(resumed).parent / "best.pt", Path(folder) / "best.pt"
    if target.exists() or not source.exists() or source.resolve() == target.resolve():
        return
    atomic_write_bytes(target, source.read_bytes())

def _differs(saved, given) -> bool:
    if isinstance(saved, float) or isinstance(given, float):
        try:
            return float(saved) != float(given)
        except (TypeError, ValueError):
            return True
    return saved != given


def resumed_settings(saved: dict, explicit: dict, override: Iterable[str] = (),
                     source: str = "the checkpoint") -> dict:
    """The settings of a resumed run: the checkpoint's ``saved`` ones, with the command line's
    ``explicit`` values where they agree, change only :data:`RESUMABLE_CHANGES`, or are named
    in ``override``. Any other difference raises :class:`RunFolderError` listing every key.

    In ``model_kwargs`` the sincfb ``backend`` may change (the same model on another device).
    """
    override = set(override)
    unknown = override - set(saved)
    if unknown:
        raise RunFolderError(f"--override names unknown settings {sorted(unknown)}; "
                             f"known: {sorted(saved)}")
    settings, conflicts = dict(saved), []
    for key, value in explicit.items():
        if key == "model_kwargs":
            value, changed = _merged_model_kwargs(saved.get(key, {}), value)
        else:
            changed = _differs(saved.get(key), value)
        if changed and key not in RESUMABLE_CHANGES and key not in override:
            conflicts.append(f"{key} {saved.get(key)!r} -> {value!r}")
        else:
            settings[key] = value
    if conflicts:
        raise RunFolderError(
            f"--resume: the command line changes settings of the run saved in {source}: "
            f"{'; '.join(conflicts)}. Leave those flags out to continue the run as it was "
            "started, or name the keys in --override (comma-separated) to continue with the "
            "new values")
    return settings


def _merged_model_kwargs(saved: dict, given: dict) -> tuple[dict, bool]:
    """``given`` model kwargs, and whether they differ from ``saved`` beyond the backend."""
    ignore = {"backend"}
    strip = lambda d: {k: v for k, v in d.items() if k not in ignore}  # noqa: E731
    return {**saved, **given}, strip({**saved, **given}) != strip(saved)


def split_names(splits: dict, names) -> dict:
    """``{split: [track names]}`` of index splits: what a checkpoint stores, so that the songs,
    not their positions in a corpus, define the split."""
    names = list(names)
    return {split: [names[int(i)] for i in indices] for split, indices in splits.items()}


def splits_from_checkpoint(state: dict, corpus_names, source: str = "the checkpoint") -> dict:
    """Index splits into a corpus (whose track names are ``corpus_names``) of the songs a
    checkpoint trained, validated and tested on; an error names songs that are gone."""
    by_name = {name: index for index, name in enumerate(corpus_names)}
    stored = state.get("split_names")
    if stored is None:          # a checkpoint from before track names were stored
        return {split: _positions(indices, len(by_name), source)
                for split, indices in state["splits"].items()}
    splits, missing = {}, []
    for split, names in stored.items():
        missing += [n for n in names if n not in by_name]
        splits[split] = np.array([by_name[n] for n in names if n in by_name], dtype=np.int64)
    if missing:
        raise RunFolderError(
            f"{len(missing)} song(s) of the splits in {source} are not in the dataset now "
            f"(first: {missing[0]!r}); the run can only continue on the data it started with")
    return splits


def _positions(indices, count: int, source: str) -> np.ndarray:
    """Track positions stored in a checkpoint, checked against a corpus of ``count`` tracks."""
    positions = np.asarray(indices, dtype=np.int64)
    if positions.size and not 0 <= positions.min() <= positions.max() < count:
        raise RunFolderError(f"the split positions in {source} go beyond this dataset's {count} "
                             "songs; the run can only continue on the data it started with")
    return positions


def evaluation_songs(state: dict, corpus_names, split: str, same_dataset: bool):
    """``(split name, indices)`` of the songs ``evaluate`` scores, looked up by track name.

    'auto': the checkpoint's test songs found in this corpus; when none are, every song the
    checkpoint neither trained nor validated on ('unseen'), so a renamed copy of the training
    data never scores its own training songs. 'all' is every song; 'train' / 'valid' / 'test'
    the checkpoint's own split (an error when none of its songs are here). ``same_dataset``
    only matters for checkpoints from before track names were stored, whose splits are indices
    valid on their own dataset alone.
    """
    names = list(corpus_names)
    everything = np.arange(len(names), dtype=np.int64)
    if split == "all":
        return "all", everything
    stored = state.get("split_names")
    if stored is None:
        if split == "auto":
            split = "test" if same_dataset and state["splits"].get("test") else "all"
        if split != "all" and not same_dataset:
            raise RunFolderError(f"the checkpoint's {split} split is stored as positions in its "
                                 "own dataset only; evaluate it there, or use --split all")
        return split, everything if split == "all" else \
            _positions(state["splits"].get(split, []), len(names), "the checkpoint")
    by_name = {name: index for index, name in enumerate(names)}
    chosen = "test" if split == "auto" else split
    found = np.array([by_name[n] for n in stored.get(chosen, []) if n in by_name], dtype=np.int64)
    if len(found):
        return chosen, found
    if split != "auto":
        raise RunFolderError(f"none of the checkpoint's {len(stored.get(split, []))} {split} "
                             "songs are in this dataset (songs are matched by track name)")
    seen = set(stored.get("train", [])) | set(stored.get("valid", []))
    return "unseen", np.array([i for i, n in enumerate(names) if n not in seen], dtype=np.int64)
