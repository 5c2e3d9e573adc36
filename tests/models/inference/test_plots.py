"""Figures: every plot function and ``mssincresnet plot`` command writes a PNG of the documented
size that is not blank; ``train`` writes the run's figures itself."""
from __future__ import annotations

import json
import shutil

import matplotlib.image
import numpy as np
import pytest
import soundfile

from models.cli import main
from models.inference.plots import figure_pixels, plot_filterbank, plot_representation
from models.inference.run_plots import plot_confusion, plot_training_curves, write_run_figures
from models.training.checkpoints import load_checkpoint

SCORES = {"confusion": [[3, 1, 0], [0, 4, 0], [1, 0, 2]], "classes": ["blues", "jazz", "rock"],
          "song_accuracy": 9 / 11}


def assert_png(path, kind: str) -> None:
    """A PNG of exactly ``figure_pixels(kind)`` that is not a single flat colour."""
    image = matplotlib.image.imread(path)
    width, height = figure_pixels(kind)
    assert image.shape[:2] == (height, width), (path, image.shape)
    assert float(np.ptp(image[..., :3])) > 0.5, f"{path} looks blank"


@pytest.fixture(scope="module")
def model(tiny_run):
    return load_checkpoint(tiny_run / "best.pt", "cpu")[0]


def test_filterbank_from_model_and_checkpoint(model, tiny_run, tmp_path):
    assert_png(plot_filterbank(model, tmp_path / "a.png"), "filterbank")
    assert_png(plot_filterbank(tiny_run / "best.pt", tmp_path / "sub" / "b.png"), "filterbank")


def test_representation_from_waveform_and_file(model, tmp_path):
    rng = np.random.default_rng(0)
    song = (0.2 * rng.standard_normal(16000 * 2)).astype(np.float32)
    model.train()
    assert_png(plot_representation(model, song, tmp_path / "wave.png"), "representation")
    assert model.training                   # the caller's mode is restored
    path = tmp_path / "stereo8k.flac"
    soundfile.write(path, np.stack([song[:2000], song[:2000]], 1), 8000)   # 0.25 s: padded
    assert_png(plot_representation(model, path, tmp_path / "file.png", offset=0.1),
               "representation")


def test_curves_and_confusion(tiny_run, tmp_path):
    assert_png(plot_training_curves(tiny_run / "log.csv", tmp_path / "c.png"), "curves")
    assert_png(plot_training_curves(tiny_run, tmp_path / "d.png"), "curves")   # the run folder
    assert_png(plot_confusion(SCORES, tmp_path / "m.png"), "confusion")
    assert_png(plot_confusion({"test": SCORES}, tmp_path / "n.png"), "confusion")
    with pytest.raises(ValueError, match="no confusion matrix"):
        plot_confusion({"songs": 3}, tmp_path / "x.png")


def test_write_run_figures(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    written = write_run_figures(run)
    assert sorted(p.name for p in written) == ["curves.png", "filterbank.png"]
    assert_png(run / "curves.png", "curves")
    assert_png(run / "filterbank.png", "filterbank")
    assert write_run_figures(tmp_path / "empty-run-folder") == []


def test_plot_commands(tiny_run, tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"test": SCORES}))
    audio = tmp_path / "song.wav"
    soundfile.write(audio, 0.1 * np.random.default_rng(1).standard_normal((44100, 2)), 44100)
    checkpoint = str(tiny_run / "best.pt")
    for kind, inputs in (("filterbank", ["--checkpoint", checkpoint]),
                         ("representation", ["--checkpoint", checkpoint, "--audio", str(audio)]),
                         ("curves", ["--log", str(tiny_run / "log.csv")]),
                         ("confusion", ["--report", str(report)])):
        out = tmp_path / f"{kind}.png"
        assert main(["plot", kind, *inputs, "--out", str(out)]) == 0, capsys.readouterr().err
        assert_png(out, kind)
    assert main(["plot", "curves", "--log", str(tmp_path / "no-run")]) == 2
    assert "no training log" in capsys.readouterr().err


def test_train_command_writes_run_figures(tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(2)
    for label, pitch in (("low", 110.0), ("high", 1760.0)):
        (data / label).mkdir(parents=True)
        for i in range(3):
            t = np.arange(16000) / 16000
            tone = 0.3 * np.sin(2 * np.pi * pitch * (1 + 0.05 * i) * t)
            soundfile.write(data / label / f"{i}.wav", tone + 0.01 * rng.standard_normal(t.size), 16000)
    out = tmp_path / "run"
    status = main(["train", str(data), "--kind", "folder", "--compact", "--epochs", "1",
                   "--backend", "reference", "--backbone", "random", "--device", "cpu", "--folds", "3", "--batch-size", "4",
                   "--clips-per-song", "1", "--out", str(out), "--no-progress",
                   "--cache-dir", str(tmp_path / "cache")])
    assert status == 0
    for kind in ("curves", "filterbank", "confusion"):
        assert_png(out / f"{kind}.png", kind)
