"""Song decisions and how they are reported: the vote over a song's clips, one result per audio
file, and the table, CSV and JSON of ``mssincresnet predict``.

numpy only, no torch: the same code serves a checkpoint (:mod:`models.inference.predict`) and an exported
ONNX model run by onnxruntime (:mod:`models.inference.onnx_predict`).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from ..base.choices import PREDICT_FORMATS as FORMATS, TIE_BREAKS
from ..base.messages import speak
from ..data.audio import AUDIO_EXTENSIONS, AudioError

__all__ = ["GENRE_COLUMNS", "FileResult", "vote", "find_audio_files", "file_result",
           "classify_paths",
           "check_predict_arguments", "format_results", "emit_results", "print_summary"]


# The two numbers behind a file's genre in every output format, named for what they are. They
# replace 'confidence', which was the vote share under majority vote and read like a calibrated
# probability. The 'genre_' prefix keeps them apart from the per-class 'vote_<class>' columns.
GENRE_COLUMNS = ("genre_vote_share", "genre_mean_probability")


@dataclass
class FileResult:
    """The decision for one audio file, or why there is none (``error``)."""

    path: str
    genre: Optional[str] = None
    vote_share: Optional[float] = None     # fraction of the clips that voted for the genre
    mean_probability: Optional[float] = None   # the genre's probability averaged over the clips
    vote_shares: dict = field(default_factory=dict)   # class -> fraction of clips voting for it
    clips: int = 0
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True when the file was classified."""
        return self.error is None

    def as_dict(self) -> dict:
        """JSON-friendly view (rounded numbers)."""
        return {"path": self.path, "genre": self.genre,
                **{key: None if value is None else round(value, 4)
                   for key, value in zip(GENRE_COLUMNS, (self.vote_share, self.mean_probability))},
                "vote_shares": {c: round(s, 4) for c, s in self.vote_shares.items()},
                "clips": self.clips, "error": self.error}


def vote(probabilities, method: str = "majority", tie_break: str = "probability"):
    """``(winner, confidence, vote_shares, mean_probabilities)`` for one song's clip probabilities
    (a (clips, classes) numpy array or CPU tensor).

    'majority': the class most clips pick; a tie goes to the higher mean probability
    (``tie_break='probability'``) or to the lowest class index (``'lowest'``, the ``np.argmax``
    of the vote counts in the authors' main.py). 'mean': the class with the highest mean
    probability.
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    probs = np.asarray(probabilities, dtype=np.float64)
    classes = probs.shape[1]
    picks = probs.argmax(1)
    shares = np.bincount(picks, minlength=classes) / len(picks)
    mean = probs.mean(0)
    if method == "majority":
        tied = np.flatnonzero(shares == shares.max())
        winner = int(tied[0] if tie_break == "lowest" else tied[np.argmax(mean[tied])])
        return winner, float(shares[winner]), shares, mean
    if method == "mean":
        winner = int(mean.argmax())
        return winner, float(mean[winner]), shares, mean
    raise ValueError(f"vote must be 'majority' or 'mean', got {method!r}")


def find_audio_files(paths: Iterable) -> tuple[list[Path], list[FileResult]]:
    """Expand files and folders (searched recursively for audio extensions) into files.

    Returns ``(files, problems)``: a path that does not exist, or a folder without audio, is a
    problem result rather than an exception, so one bad argument does not stop a batch. A file
    named explicitly is tried whatever its extension.
    """
    files, problems, seen = [], [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                problems.append(FileResult(str(path), error=f"{path}: no audio files in this folder"))
        elif path.is_file():
            found = [path]
        else:
            found = []
            problems.append(FileResult(str(path), error=f"{path}: no such file or folder"))
        for item in found:
            if item.resolve() not in seen:          # the same file named twice counts once
                seen.add(item.resolve())
                files.append(item)
    return files, problems


def file_result(path, decode: Callable, decide: Callable, classes) -> FileResult:
    """The :class:`FileResult` of one file: ``decode(path)`` gives its track and
    ``decide(track)`` ``(winner, vote_shares, mean_probabilities, clips)``; a file that cannot be
    decoded gives a result with ``error`` instead."""
    try:
        track = decode(path)
    except AudioError as error:             # the message already names the file
        return FileResult(str(path), error=str(error))
    except OSError as error:                # e.g. permission denied, a vanished file
        return FileResult(str(path), error=f"{path}: {error}")
    winner, shares, mean, clips = decide(track)
    return FileResult(str(path), classes[winner], float(shares[winner]), float(mean[winner]),
                      {c: float(s) for c, s in zip(classes, shares)}, clips)


def classify_paths(paths, classify_file: Callable, progress: bool = False) -> list[FileResult]:
    """``classify_file(path)`` of every audio file in ``paths`` (a path, or a list of files and
    folders searched recursively), in order, then the problems (paths that do not exist,
    folders without audio). ``progress``: a bar on stderr when it is a terminal."""
    files, problems = find_audio_files([paths] if isinstance(paths, (str, Path)) else paths)
    from ..base.progress import progress_bar

    files = progress_bar(files, "classifying", "file", progress, leave=True)
    return [classify_file(path) for path in files] + problems


def check_predict_arguments(batch_size, vote_method, batch_flag: str = "batch size") -> None:
    """``ValueError`` for a batch size that is not a positive integer or an unknown vote."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{batch_flag} must be a positive integer, got {batch_size!r}")
    if vote_method not in (None, "majority", "mean"):
        raise ValueError(f"vote must be 'majority' or 'mean', got {vote_method!r}")


def _top_votes(result: FileResult, count: int = 3) -> str:
    """'rock 0.62, metal 0.25' — the classes that received most votes."""
    ranked = sorted(result.vote_shares.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {share:.2f}" for name, share in ranked if share > 0)


def _table(results: list[FileResult]) -> str:
    """Aligned plain-text table: the classified files, then the skipped ones with the reason
    (nothing at all when there are no results)."""
    if not results:
        return ""
    done = [r for r in results if r.ok]
    rows = [("file", "genre") + GENRE_COLUMNS + ("clips", "votes")]
    rows += [(r.path, r.genre, f"{r.vote_share:.3f}", f"{r.mean_probability:.3f}", str(r.clips),
              _top_votes(r)) for r in done]
    rows += [(r.path, "(skipped)", "-", "-", "0", r.error) for r in results if not r.ok]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1])]
                       + [row[i].rjust(widths[i]) for i in (2, 3, 4)] + [row[5]]).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"


def _csv(results: list[FileResult], classes: list) -> str:
    """CSV of every file, one ``vote_<class>`` column per class; a skipped file has an empty
    genre and its reason in the ``error`` column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "genre", *GENRE_COLUMNS, "clips"] + [f"vote_{c}" for c in classes]
                    + ["error"])
    for r in results:
        if r.ok:
            writer.writerow([r.path, r.genre, f"{r.vote_share:.4f}", f"{r.mean_probability:.4f}",
                             r.clips] + [f"{r.vote_shares.get(c, 0.0):.4f}" for c in classes]
                            + [""])
        else:
            writer.writerow([r.path, "", "", "", 0] + [""] * len(classes) + [r.error])
    return buffer.getvalue()


def format_results(results: list[FileResult], fmt: str = "table", classes=None,
                   checkpoint: Optional[str] = None, note: Optional[str] = None) -> str:
    """Render results as 'table', 'json' or 'csv'. Every format lists the skipped files too,
    with the reason: the table and CSV as rows after the classified ones, the JSON object
    under ``skipped``, with ``note`` (e.g. that an authors' checkpoint's class order was
    assumed) when there is one."""
    done = [r for r in results if r.ok]
    classes = list(classes or (done[0].vote_shares if done else []))
    if fmt == "table":
        return _table(results)
    if fmt == "csv":
        return _csv(done + [r for r in results if not r.ok], classes)
    if fmt == "json":
        payload = {"checkpoint": checkpoint, "classes": classes,
                   "results": [r.as_dict() for r in done],
                   "skipped": [{"path": r.path, "error": r.error} for r in results if not r.ok]}
        if note:
            payload["note"] = note
        return json.dumps(payload, indent=1) + "\n"
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def emit_results(results: list[FileResult], fmt: str, classes, source: str,
                 note: Optional[str], output=None) -> int:
    """Print the results (or write them to ``output`` atomically) and name the skipped files on
    stderr; returns ``mssincresnet predict``'s exit status: 0 when at least one file was
    classified, 1 when none was."""
    from ..base.fileio import atomic_write_text

    text = format_results(results, fmt, classes, source, note)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)
    skipped = [r for r in results if not r.ok]
    for r in skipped:
        print(f"skipped: {r.error}", file=sys.stderr)
    classified = len(results) - len(skipped)
    if output:
        print(f"{classified} file(s) classified, {len(skipped)} skipped -> {output}",
              file=sys.stderr)
    return 0 if classified else 1


def print_summary(summary: Optional[str]) -> None:
    """The model card's one-line summary of the model in use, on stderr (nothing for None)."""
    if summary:
        speak("model", summary)
