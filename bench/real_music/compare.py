"""Train every configuration with every seed on the benchmark's split and write one JSON.

Each run is ``python -m models train <manifest> --model ... --seed S --out <runs>/<config>/seed-S``
in its own process (the command line a user types); its ``report.json`` gives the test scores,
and the wall time is measured around the process. The JSON records the machine, the commands,
the split (track names per split), every run, mean ± std per configuration, and the classical
reference on the same split; its ``markdown`` field is the README's table.
"""
from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from bench.common import (REPOSITORY, device_slug, git_commit, package_version, run_metadata,
                          write_json_atomic)

__all__ = ["CONFIGS", "TRAIN_COMMAND", "machine_meta", "manifest_split", "dataset_summary",
           "run_command", "run_one", "run_record_path", "finished_run", "summarise", "render_markdown", "compare", "results_path",
           "write_results", "read_configs"]

#: Configuration name -> the model and the ``models train`` flags that define it. Extend it
#: here or with ``--configs-file`` (a JSON object of the same shape).
CONFIGS = {
    # the laptop size (README, "Which configuration"): the benchmark's subject
    "mssincresnet-laptop": {"model": "mssincresnet", "flags": ["--size", "laptop"]},
    "mssincresnet-laptop-frozen": {"model": "mssincresnet",
                                   "flags": ["--size", "laptop", "--cutoffs", "freeze"]},
    "melresnet-laptop": {"model": "melresnet", "flags": ["--size", "laptop"]},
    # SincNet's step costs 2.4 x MS-SincResNet's (2.0 vs 0.85 s for 24 clips of 3 s on two
    # idle Xeon cores: its 251-tap sinc layer runs at full rate, then 56k-wide layers), so 12 of
    # its epochs fill the 30-minute budget that 20 laptop epochs fill for the ResNet models
    "sincnet-laptop": {"model": "sincnet", "flags": ["--size", "laptop", "--epochs", "12"]},
    # the compact size of the demo and the tests, for the record
    "mssincresnet-compact": {"model": "mssincresnet",
                             "flags": ["--compact", "--backbone", "random"]},
    "melresnet-compact": {"model": "melresnet", "flags": ["--compact", "--backbone", "random"]},
    "sincresnet-compact": {"model": "sincresnet", "flags": ["--compact", "--backbone", "random"]},
    "sincnet-compact": {"model": "sincnet", "flags": ["--compact"]},
}
#: How a run is started: the project's own command line, from this checkout.
TRAIN_COMMAND = (sys.executable, "-m", "models", "train")
#: What the markdown table calls the classical reference.
CLASSICAL_NAME = ("logistic regression on per-song log-mel (96 bands: mean, std, mean absolute "
                  "difference) and chroma (12 classes: mean, std) statistics, L2 chosen on valid")


def machine_meta(argv: Sequence[str]) -> dict:
    """The run record every benchmark opens with (:func:`bench.common.run_metadata`), with the
    audio libraries' versions: the decoders decide what the networks hear."""
    return run_metadata("bench.real_music", argv,
                        versions={"torchaudio": package_version("torchaudio"),
                                  "soundfile": package_version("soundfile")})


def manifest_split(manifest_path) -> dict:
    """``{split: {'tracks': [...], 'songs': n}}`` of a manifest, tracks by
    :func:`bench.real_music.dataset.track_of`."""
    from models.data import manifest

    from .dataset import track_of

    split: dict = {}
    for track in manifest(manifest_path).tracks:
        entry = split.setdefault(track.split or "none", {"tracks": set(), "songs": 0})
        entry["tracks"].add(track_of(track.name))
        entry["songs"] += 1
    return {name: {"tracks": sorted(e["tracks"]), "songs": e["songs"]}
            for name, e in sorted(split.items())}


def dataset_summary(manifest_path) -> Optional[dict]:
    """Packages, licences, counts and skips from the ``realmusic.json`` beside the manifest
    (None for another manifest)."""
    from .dataset import DATASET_INFO_NAME

    info_path = Path(manifest_path).with_name(DATASET_INFO_NAME)
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    return {"packages": info["packages"], "excerpts": info["excerpts"], "split": info["split"],
            "per_class": info["per_class"], "totals": info["totals"],
            "skipped": {reason: entry["count"] for reason, entry in info["skipped"].items()}}


def run_command(manifest_path, config: dict, seed: int, out: Path,
                extra: Sequence[str] = (),
                train_command: Sequence[str] = TRAIN_COMMAND) -> list[str]:
    """The ``models train`` command line of one run."""
    return [*train_command, str(manifest_path), "--model", config["model"], *config["flags"],
            *extra, "--seed", str(seed), "--out", str(out), "--no-progress", "--overwrite"]


def run_record_path(out: Path) -> Path:
    """Where :func:`run_one` keeps the row of the run written to ``out``: ``<out>.json``."""
    return out.parent / f"{out.name}.json"


def finished_run(command: Sequence[str], out: Path) -> Optional[dict]:
    """The row of an earlier successful run of exactly ``command`` into ``out``, else None, so
    that an interrupted comparison resumes where it stopped."""
    try:
        row = json.loads(run_record_path(out).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("command") != shlex.join(command) or \
            "error" in row or not (out / "report.json").is_file():
        return None
    return row


def run_one(command: Sequence[str], out: Path, threads: Optional[int] = None) -> dict:
    """Run one training command (its output into ``<out>.log``) with ``threads`` CPU threads
    (None: torch's default), read its report and keep the row in ``<out>.json``."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPOSITORY), os.environ.get("PYTHONPATH")) if p)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    # the code the run trains with: a later call reuses the run only for the same command, and
    # a reader of the results sees when the code behind one command line changed
    commit = git_commit(REPOSITORY)
    started = time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        completed = subprocess.run(list(command), stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=REPOSITORY)
    row = {"command": shlex.join(command), "git_commit": commit,
           "returncode": completed.returncode,
           "wall_seconds": round(time.perf_counter() - started, 1),
           # other runs or jobs may have shared the CPU: the load says how much
           "loadavg_end": [round(load, 2) for load in os.getloadavg()],
           "log": str(out.parent / f"{out.name}.log")}
    report_path = out / "report.json"
    if threads:
        row["threads"] = threads
    if completed.returncode != 0 or not report_path.is_file():
        tail = Path(row["log"]).read_text(errors="replace").strip().splitlines()[-3:]
        row = {**row, "error": " | ".join(tail) or "no report.json"}
    else:
        report = json.loads(report_path.read_text())
        test = report.get("test", {})
        row = {**row, "test_song_accuracy": test.get("song_accuracy"),
               "test_clip_accuracy": test.get("clip_accuracy"),
               "best_epoch": report.get("best_epoch"), "report": str(report_path)}
    write_json_atomic(run_record_path(out), row)
    return row


def _mean_std(values: list) -> dict:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of the non-None values."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "n": len(values)}


def summarise(runs: list[dict]) -> dict:
    """Per configuration: mean ± std over its seeds of the test song and clip accuracies and
    the wall time."""
    summary = {}
    for name in dict.fromkeys(r["config"] for r in runs):
        mine = [r for r in runs if r["config"] == name]
        summary[name] = {key: _mean_std([r.get(key) for r in mine])
                         for key in ("test_song_accuracy", "test_clip_accuracy", "wall_seconds")}
        summary[name]["failed_runs"] = sum("error" in r for r in mine)
    return summary


def _cell(stats: dict, scale: float = 1.0, digits: int = 3) -> str:
    if stats["mean"] is None:
        return "–"
    text = f"{stats['mean'] * scale:.{digits}f}"
    return text + (f" ± {stats['std'] * scale:.{digits}f}" if stats["n"] > 1 else "")


def render_markdown(results: dict) -> str:
    """The README's table: one row per configuration, the classical reference, chance."""
    lines = ["| model | seeds | test song accuracy | test clip accuracy | wall time (min) |",
             "|---|---:|---:|---:|---:|"]
    for name, stats in results.get("summary", {}).items():
        lines.append(f"| {name} | {stats['test_song_accuracy']['n']} | "
                     f"{_cell(stats['test_song_accuracy'])} | {_cell(stats['test_clip_accuracy'])}"
                     f" | {_cell(stats['wall_seconds'], 1 / 60, 1)} |")
    classical = results.get("classical")
    if classical:
        own = classical["manifest_split"]
        lines.append(f"| {CLASSICAL_NAME} | – | **{own['test_song_accuracy']:.3f}** | – | "
                     f"{classical['seconds'] / 60:.1f} |")
    classes = len((results.get("dataset") or {}).get("per_class", {}))
    if classes:
        lines.append(f"| chance | | {1 / classes:.3f} | | |")
    cpu = results.get("meta", {}).get("cpu", {})
    lines += ["", f"{cpu.get('model', '?')}, {results.get('meta', {}).get('threads', '?')} "
                  f"threads, torch {results.get('meta', {}).get('versions', {}).get('torch')}; "
                  "mean ± std over seeds (sample std)."]
    return "\n".join(lines)


def results_path(meta: dict, kind: str) -> Path:
    """bench/results/realmusic-<kind>-<cpu>-<date>.json in this checkout."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return REPOSITORY / "bench" / "results" / \
        f"realmusic-{kind}-{device_slug(meta['cpu']['model'])}-{stamp}.json"


def compare(manifest_path, configs: dict, seeds: Sequence[int], runs_dir: Path,
            extra: Sequence[str] = (), split_seeds: Sequence[int] = (),
            train_command: Sequence[str] = TRAIN_COMMAND, argv: Sequence[str] = (),
            classical: bool = True, jobs: int = 1, gather: bool = False) -> dict:
    """Run every configuration with every seed, ``jobs`` runs at a time (each with
    cpu_count / jobs threads), then the classical reference; the results dictionary (see the
    module docstring). A run already finished with the same command is read, not repeated;
    ``gather`` reads the finished runs only and leaves out (and lists under ``missing``) the
    configuration/seed pairs that have none."""
    from concurrent.futures import ThreadPoolExecutor

    from .classical import classical_reference

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

    # runs start in the repository root: paths given relative to here must still hold there
    manifest_path, runs_dir = Path(manifest_path).resolve(), Path(runs_dir).resolve()
    results = {"meta": machine_meta(argv), "manifest": str(manifest_path),
               "dataset": dataset_summary(manifest_path), "split": manifest_split(manifest_path),
               "configs": configs, "seeds": list(seeds), "jobs": jobs, "runs": []}

    def one(name: str, seed: int) -> dict:
        out = Path(runs_dir) / name / f"seed-{seed}"
        command = run_command(manifest_path, configs[name], seed, out, extra, train_command)
        row = finished_run(command, out)
        if gather and not row:
            print(f"{name} seed {seed}: no finished run, left out", flush=True)
            return {"config": name, "seed": seed, "missing": shlex.join(command)}
        print(f"{name} seed {seed}: {'reusing ' if row else ''}{shlex.join(command)}", flush=True)
        row = {"config": name, "model": configs[name]["model"], "seed": seed,
               **(row or run_one(command, out, threads))}
        print(f"  {name} seed {seed} -> {row.get('error') or row['test_song_accuracy']} "
              f"({row['wall_seconds']:.0f} s)", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, name, seed) for name in configs for seed in seeds]
        rows = [future.result() for future in futures]
    results["runs"] = [row for row in rows if "missing" not in row]
    results["missing"] = [row for row in rows if "missing" in row]
    results["summary"] = summarise(results["runs"]) if results["runs"] else {}
    if classical:
        results["classical"] = classical_reference(manifest_path, split_seeds)
    results["markdown"] = render_markdown(results)
    return results


def write_results(results: dict, out: Optional[Path], kind: str) -> Path:
    """Write ``results`` to ``out`` or the default results path; returns the path."""
    path = Path(out) if out else results_path(results["meta"], kind)
    write_json_atomic(path, results)
    return path


def read_configs(path: Optional[Path], names: Optional[Sequence[str]]) -> dict:
    """:data:`CONFIGS` plus those of ``path`` (JSON), restricted to ``names`` in that order."""
    configs = dict(CONFIGS)
    if path:
        extra = json.loads(Path(path).read_text())
        for name, config in extra.items():
            if not isinstance(config, dict) or not isinstance(config.get("model"), str) or \
                    not all(isinstance(f, str) for f in config.get("flags", [])):
                raise ValueError(f"{path}: configuration {name!r} must be "
                                 '{"model": "...", "flags": ["...", ...]}')
            configs[name] = {"model": config["model"], "flags": list(config.get("flags", []))}
    if not names:
        return configs
    unknown = [n for n in names if n not in configs]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {list(configs)}")
    return {n: configs[n] for n in names}

