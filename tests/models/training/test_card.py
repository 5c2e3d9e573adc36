"""The model card that ``demo`` and ``train`` write beside every checkpoint, checked on a demo run
shrunk to a few seconds (its settings, not its code, are replaced).

References: the run's own report.json and log.json (written by other code), the parameter count
of :func:`tests.models.helpers.mssincresnet_parameters`, git itself for the commit.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import models.cli
import models.commands.demo
from models.cli import main
from tests.models.helpers import mssincresnet_parameters

TINY_DEMO = {"songs_per_genre": 3, "song_seconds": 1.5, "epochs": 1, "batch_size": 8, "lr": 0.01,
             "warmup_epochs": 0, "warmup_lr": 0.001, "halve_every": 4, "clips_per_song": 2,
             "hop_seconds": 0.25, "folds": 3}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``mssincresnet demo`` with the tiny settings: (out folder, best.pt, report, log)."""
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models.commands.demo, "DEMO_SETTINGS", TINY_DEMO)
        assert main(["demo", "--out", str(out), "--epochs", "1", "--backend", "reference",
                     "--cache-dir", str(out / "cache"), "--no-progress"]) == 0
    best = torch.load(out / "best.pt", weights_only=True)
    return (out, best, json.loads((out / "report.json").read_text()),
            json.loads((out / "log.json").read_text()))


def test_the_card_holds_the_final_test_scores(demo):
    _, best, report, log = demo
    card = best["card"]
    test, valid = card["scores"]["test"], card["scores"]["valid"]
    for key in ("song_accuracy", "clip_accuracy", "confusion", "songs", "clips"):
        assert test[key] == report["test"][key], key
    row = log[card["training"]["best_epoch"] - 1]
    assert valid["song_accuracy"] == row["valid_song_accuracy"]
    assert valid["clip_accuracy"] == row["valid_clip_accuracy"]
    assert np.array(valid["confusion"]).sum() == valid["songs"] == report["splits"]["valid"]
    assert f"test song {test['song_accuracy']:.3f}" in card["summary"]


def test_the_card_describes_model_data_recipe_and_software(demo):
    _, best, report, _ = demo
    card = best["card"]
    assert card["model"]["parameters"] == mssincresnet_parameters(6, 40, 8000, spp=True, hidden=128)
    assert card["data"]["classes"] == report["test"]["classes"] == best["classes"]
    assert card["data"]["splits"] == report["splits"] and card["data"]["songs"] == 18
    assert card["data"]["dataset"] == "synthetic" and card["trunk"] == "random"
    recipe = card["recipe"]
    assert recipe["name"] == "demo" and recipe["compared_with"] == "paper"
    assert recipe["differences"]["epochs"] == {"run": 1, "recipe": 200}
    assert recipe["differences"]["hop_seconds"] == {"run": 0.25, "recipe": 0.5}
    assert "momentum" not in recipe["differences"]             # the demo keeps the paper's
    assert card["training"]["seed"] == 0 and card["training"]["device"].startswith("cpu")
    assert card["training"]["wall_seconds"] >= card["training"]["step_seconds"] > 0
    assert card["software"]["torch"] == torch.__version__
    root = Path(models.cli.__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert card["software"]["git_commit"].split("+")[0] == head.stdout.strip()
    assert json.loads(json.dumps(card)) == card                # plain JSON


def test_model_card_file_matches_the_checkpoint(demo):
    out, best, report, _ = demo
    text = (out / "MODEL_CARD.md").read_text()
    card = best["card"]
    assert card["summary"] in text
    assert f"| test | {report['splits']['test']} | {report['test']['song_accuracy']:.4f} |" in text
    for name, row in zip(card["data"]["classes"], report["test"]["confusion"]):
        assert f"| **{name}** | " + " | ".join(map(str, row)) + " |" in text
    assert not list(out.glob(".MODEL_CARD.md.tmp*"))          # written through a renamed file


def test_last_checkpoint_carries_its_own_card(demo):
    out, best, _, log = demo
    last = torch.load(out / "last.pt", weights_only=True)["card"]
    assert last["training"]["epoch"] == len(log) and "test" not in last["scores"]
    assert last["data"] == best["card"]["data"]


def test_predict_prints_the_summary(demo, tmp_path, capsys):
    out, best, _, _ = demo
    soundfile.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(12000) / 7.0), 16000)
    assert main(["predict", str(tmp_path / "a.wav"), "--checkpoint", str(out / "best.pt"),
                 "--device", "cpu"]) == 0
    assert f"mssincresnet: model: {best['card']['summary']}" in capsys.readouterr().err
