"""Never lose work, never mislead (issue "Never lose work..."): protected run folders, manifests
keyed by path, a resume that refuses a changed recipe, a diverged run that keeps its last good
checkpoint, evaluation keyed by track name, and the first-hour rough edges of the CLI."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.cli import main
from models.data.synthetic import GENRES, synthesize_song

REPO = Path(__file__).resolve().parents[3]
FAST = ["--compact", "--epochs", "1", "--batch-size", "8", "--clips-per-song", "1",
        "--backend", "reference", "--device", "cpu", "--backbone", "random", "--no-progress",
        "--warmup-epochs", "0"]


def write_song(path: Path, genre: int, index: int, seconds: float = 1.2, rate: int = 16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, synthesize_song(GENRES[genre], seconds, rate, np.random.default_rng([genre, index])),
             rate)


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """Two genres, four songs each, as a folder per class."""
    root = tmp_path_factory.mktemp("music")
    for genre in (0, 1):
        for index in range(4):
            write_song(root / GENRES[genre].name / f"{index}.wav", genre, index)
    return root


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def train(capsys, data, out, *extra):
    return run(capsys, "train", data, "--out", out, "--cache-dir", out.parent / "cache",
               "--protocol", "cv", "--folds", "4", *FAST, *extra)


# --- 1. run folders are never overwritten by accident --------------------------------------

def test_a_run_folder_is_not_overwritten_without_overwrite(music, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, music, out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    status, _, err = train(capsys, music, out)
    assert status == 2 and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    status, printed, _ = train(capsys, music, out, "--overwrite")
    assert status == 0 and "was moved to" in printed
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1
    assert {p.name: p.read_bytes() for p in aside[0].iterdir() if p.is_file()} == before
    assert (out / "last.pt").is_file()


# --- 2. manifests keyed by path -------------------------------------------------------------

def write_manifest(path: Path, rows) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "label", "split"), *rows])
    return path


@pytest.fixture(scope="module")
def album_tree(tmp_path_factory):
    """Every album folder has songs named 0.wav, 1.wav ... as ripped CDs do."""
    root = tmp_path_factory.mktemp("albums")
    for genre in (0, 1):
        for album in ("a", "b", "c"):
            for index in range(2):
                write_song(root / GENRES[genre].name / album / f"{index}.wav", genre,
                           10 * ord(album) + index)
    return root


def test_repeated_file_names_keep_their_declared_splits(album_tree, tmp_path, capsys):
    rows, declared = [], {}
    for genre in (0, 1):
        for album, split in (("a", "train"), ("b", "valid"), ("c", "test")):
            for index in range(2):
                name = f"{GENRES[genre].name}/{album}/{index}.wav"
                rows.append((name, GENRES[genre].name, split))
                declared[name] = split
    listing = write_manifest(album_tree / "manifest.csv", rows)
    out = tmp_path / "run"
    status, _, err = run(capsys, "train", listing, "--out", out, "--cache-dir", tmp_path / "cache",
                         *FAST)
    assert status == 0, err
    state = torch.load(out / "last.pt", weights_only=True)
    for split, names in state["split_names"].items():
        assert sorted(names) == sorted(n for n, s in declared.items() if s == split)


def test_a_row_without_split_is_an_error_unless_cv_is_asked_for(album_tree, tmp_path, capsys):
    from models.data.readers.manifest import manifest
    from models.data.tracks import DataError

    rows = [(f"{GENRES[g].name}/a/{i}.wav", GENRES[g].name, "train") for g in (0, 1)
            for i in range(2)]
    rows.append((f"{GENRES[0].name}/b/0.wav", GENRES[0].name, ""))
    listing = write_manifest(album_tree / "mixed.csv", rows)
    with pytest.raises(DataError, match=r"mixed.csv:6: this row gives no split.*--protocol cv"):
        manifest(listing)
    assert all(t.split is None for t in manifest(listing, ignore_splits=True).tracks)


def test_classes_fix_the_label_set_and_typos_are_caught(album_tree):
    from models.data.readers.manifest import manifest
    from models.data.tracks import DataError

    rows = [(f"{GENRES[0].name}/a/0.wav", "noise", "train"),
            (f"{GENRES[0].name}/a/1.wav", "Noise", "train"),
            (f"{GENRES[1].name}/a/0.wav", "tone", "test")]
    listing = write_manifest(album_tree / "typos.csv", rows)
    with pytest.warns(UserWarning, match="differ only in case"):
        assert manifest(listing).classes == ["Noise", "noise", "tone"]
    with pytest.raises(DataError, match=r"typos.csv:3: unknown label 'Noise' \(did you mean 'noise'"):
        manifest(listing, classes=["tone", "noise"])
    rows[1] = (rows[1][0], "noise", "train")
    fixed = manifest(write_manifest(album_tree / "fixed.csv", rows), classes=["tone", "noise"])
    assert fixed.classes == ["tone", "noise"] and [t.label for t in fixed.tracks] == [1, 1, 0]


def test_folder_classes_option_orders_and_checks(music):
    from models.data.tracklists import open_tracklist
    from models.data.tracks import DataError

    names = [GENRES[1].name, GENRES[0].name]
    tracklist = open_tracklist(str(music), "folder", classes=names)
    assert tracklist.classes == names
    assert all(tracklist.classes[t.label] == t.name.split("/")[0] for t in tracklist.tracks)
    with pytest.raises(DataError, match="not in --classes"):
        open_tracklist(str(music), "folder", classes=[GENRES[0].name, "jazz"])


def test_small_classes_and_splits_without_a_class_are_warned_about(music, tmp_path, capsys):
    status, _, err = train(capsys, music, tmp_path / "run", "--folds", "8")
    assert status == 0
    assert "fewer songs than the 8 folds" in err
    assert "holds no song of class" in err


# --- 3. --resume keeps the recipe and the splits --------------------------------------------

@pytest.fixture
def finished(music, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, music, out, "--seed", "5")[0] == 0
    return out


def test_resume_refuses_a_changed_recipe_and_names_the_keys(music, finished, capsys):
    status, _, err = train(capsys, music, finished, "--resume", "--seed", "6", "--lr", "0.1")
    assert status == 2
    assert "seed 5 -> 6" in err and "lr 0.005 -> 0.1" in err and "--override" in err
    assert "Traceback" not in err


def test_resume_without_the_flags_continues_with_the_saved_recipe(music, finished, capsys):
    before = torch.load(finished / "last.pt", weights_only=True)
    status, _, err = run(capsys, "train", music, "--out", finished, "--cache-dir",
                         finished.parent / "cache", "--resume", "--epochs", "2", "--no-progress")
    assert status == 0, err                      # no --compact, no --seed: taken from last.pt
    after = torch.load(finished / "last.pt", weights_only=True)
    assert after["epoch"] == 2 and after["config"]["seed"] == 5
    assert after["config"]["model_kwargs"] == before["config"]["model_kwargs"]
    assert after["split_names"] == before["split_names"]


def test_resume_with_override_keeps_the_checkpoints_splits(music, finished, capsys):
    before = torch.load(finished / "last.pt", weights_only=True)
    status, _, err = train(capsys, music, finished, "--resume", "--seed", "6", "--override",
                           "seed", "--epochs", "2")
    assert status == 0, err
    after = torch.load(finished / "last.pt", weights_only=True)
    assert after["config"]["seed"] == 6
    assert after["split_names"] == before["split_names"]    # never recomputed from the new seed


def test_resume_refuses_another_split(music, finished, capsys):
    status, _, err = train(capsys, music, finished, "--resume", "--folds", "3")
    assert status == 2 and "keeps its splits" in err


def test_resume_into_another_folder_carries_the_best_checkpoint(music, finished, tmp_path,
                                                                capsys):
    """Resuming a run's last.pt with --out elsewhere, where no further epoch beats the saved
    best (here: no epoch left to train), still tests the run's best weights instead of failing
    with "best.pt: no such checkpoint"; the original folder is left as it was."""
    source = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    fork = tmp_path / "fork"
    status, out, err = run(capsys, "train", music, "--out", fork, "--cache-dir",
                           finished.parent / "cache", "--resume", finished / "last.pt",
                           "--epochs", "1", "--no-progress")
    assert status == 0, err
    assert (fork / "best.pt").read_bytes() == source["best.pt"]
    assert json.loads((fork / "report.json").read_text())["test"]["songs"] >= 1
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == source


def test_a_model_mismatch_is_one_readable_line(finished, music, tmp_path):
    from models.data.cache import load_corpus
    from models.data.tracklists import open_tracklist
    from models.base.datafiles import CheckpointError
    from models.training.checkpoints import read_checkpoint
    from models.training.trainer import Trainer
    from tests.models.conftest import tiny_train_config

    state = read_checkpoint(finished / "last.pt")
    corpus = load_corpus(open_tracklist(str(music)), 16000, tmp_path / "cache", progress=False)
    splits = {k: np.asarray(v) for k, v in state["splits"].items()}
    kwargs = dict(tiny_train_config().model_kwargs, num_filters=48)
    trainer = Trainer(tiny_train_config(model_kwargs=kwargs), corpus, splits, tmp_path / "other",
                      progress=False, log=lambda *_: None)
    with pytest.raises(CheckpointError) as caught:
        trainer.resume(finished / "last.pt")
    assert "\n" not in str(caught.value) and "do not fit this model" in str(caught.value)


# --- 4. a diverged run stops and keeps the last good checkpoint -----------------------------

def test_divergence_stops_with_a_message_and_keeps_the_last_checkpoint(music, finished, capsys,
                                                                      monkeypatch):
    import models.training.trainer as train_module

    good = torch.load(finished / "last.pt", weights_only=True)["model_state"]
    real = train_module.mixed_cross_entropy
    monkeypatch.setattr(train_module, "mixed_cross_entropy",
                        lambda logits, batch: real(logits, batch) * float("nan"))
    status, _, err = train(capsys, music, finished, "--resume", "--epochs", "2")
    assert status == 3
    assert "training diverged" in err and "last good checkpoint" in err and "Traceback" not in err
    kept = torch.load(finished / "last.pt", weights_only=True)
    assert kept["epoch"] == 1
    for name, tensor in kept["model_state"].items():
        assert torch.equal(tensor, good[name]), name


# --- 6. rough edges ------------------------------------------------------------------------

def test_unusable_files_say_what_is_wrong_and_decoders_stay_quiet(tmp_path, capfd):
    from models.data.audio import AudioError, load_audio

    write_song(tmp_path / "good.wav", 0, 0)
    data = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    sf.write(tmp_path / "good.mp3", sf.read(tmp_path / "good.wav")[0], 16000)
    mp3 = (tmp_path / "good.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(mp3[: len(mp3) // 2])
    (tmp_path / "notes.mp3").write_text("this is a text file, not music")
    capfd.readouterr()
    assert len(load_audio(tmp_path / "good.mp3")) > 0
    for name, message in (("cut.wav", "truncated: its header declares"),
                          ("cut.mp3", "truncated: its header declares"),
                          ("notes.mp3", "not a recognised audio file"),
                          ("gone.flac", "no such file")):
        with pytest.raises(AudioError, match=message):
            load_audio(tmp_path / name)
    assert capfd.readouterr().err == ""             # mpg123's notes did not reach the terminal


def test_predict_lists_skipped_files_in_every_format(tiny_run, tmp_path, capsys):
    write_song(tmp_path / "song.wav", 0, 1)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    printed = {}
    for fmt in ("table", "csv", "json"):
        status, printed[fmt], _ = run(capsys, "predict", tmp_path, "--checkpoint",
                                      tiny_run / "best.pt", "--device", "cpu", "--format", fmt)
        assert status == 0 and "broken.wav" in printed[fmt] and "song.wav" in printed[fmt], fmt
    rows = {Path(r["path"]).name: r for r in csv.DictReader(printed["csv"].splitlines())}
    assert rows["broken.wav"]["genre"] == "" and rows["broken.wav"]["error"]
    assert rows["song.wav"]["genre"] and rows["song.wav"]["error"] == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
def test_cuda_without_a_gpu_is_one_line(music, tmp_path, capsys):
    status, _, err = run(capsys, "train", music, "--out", tmp_path / "run", *FAST,
                         "--device", "cuda")
    assert status == 2 and err.strip().splitlines() == [
        "mssincresnet: error: --device cuda: no CUDA GPU is usable on this machine; use "
        "--device cpu (or auto)"]


def test_epochs_inside_the_warm_up_are_warned_about(music, tmp_path, capsys):
    status, _, err = run(capsys, "train", music, "--out", tmp_path / "run", "--cache-dir",
                         tmp_path / "cache", *FAST[:-2], "--warmup-epochs", "5",
                         "--protocol", "cv", "--folds", "4")
    assert status == 0 and "warm-up" in err and "never at --lr" in err


def test_evaluate_a_renamed_copy_scores_only_the_test_songs(music, finished, tmp_path, capsys):
    import shutil

    copy = tmp_path / "renamed-copy"
    shutil.copytree(music, copy)
    figure = finished / "confusion.png"
    figure_before = figure.read_bytes() if figure.exists() else None
    status, _, err = run(capsys, "evaluate", copy, "--checkpoint", finished / "best.pt",
                         "--cache-dir", tmp_path / "cache", "--no-progress", "--device", "cpu",
                         "--out", tmp_path / "eval")
    assert status == 0, err
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    test_names = torch.load(finished / "best.pt", weights_only=True)["split_names"]["test"]
    assert report["split"] == "test"
    assert sorted(s["name"] for s in report["songs_detail"]) == sorted(test_names)
    assert report["confusion_axes"].startswith("rows: true class")
    assert (tmp_path / "eval" / "confusion.png").is_file()
    assert (figure.read_bytes() if figure.exists() else None) == figure_before
