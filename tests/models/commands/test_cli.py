"""The mssincresnet command line: train, evaluate and demo, end to end on small data."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from models.cli import main
from models.commands.demo import DEMO_SCOPE
from models.data.synthetic import GENRES, synthesize_song

FAST = ["--compact", "--epochs", "1", "--batch-size", "8", "--clips-per-song", "1",
        "--backend", "reference", "--device", "cpu", "--no-progress", "--warmup-epochs", "0",
        "--backbone", "random"]


@pytest.fixture(scope="module")
def music_folder(tmp_path_factory):
    """Three genres of synthetic songs as 22.05 kHz files, plus one corrupt file."""
    root = tmp_path_factory.mktemp("music")
    for label, genre in enumerate(GENRES[:3]):
        (root / genre.name).mkdir()
        for i in range(3):
            song = synthesize_song(genre, 1.5, 22050, np.random.default_rng([label, i]))
            sf.write(root / genre.name / f"{i}.wav", song, 22050)
    (root / GENRES[0].name / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


@pytest.fixture(scope="module")
def trained(music_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    code = main(["train", str(music_folder), "--protocol", "cv", "--folds", "3", "--out", str(out),
                 "--cache-dir", str(cache), *FAST])
    return code, out, cache


def test_train_skips_and_counts_unusable_files(trained, capsys):
    code, out, _ = trained
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["skipped_files"]) == 1 and "broken.wav" in report["skipped_files"][0]
    assert report["splits"] == {"train": 3, "valid": 3, "test": 3}
    assert 0.0 <= report["test"]["song_accuracy"] <= 1.0
    assert {"last.pt", "best.pt", "log.csv", "log.json"} <= {p.name for p in out.iterdir()}


def test_evaluate_a_checkpoint(trained, music_folder, capsys):
    _, out, cache = trained
    code = main(["evaluate", str(music_folder), "--checkpoint", str(out / "best.pt"),
                 "--cache-dir", str(cache), "--no-progress", "--device", "cpu"])
    assert code == 0
    report = json.loads((out / f"evaluation-{music_folder.name}-test" / "evaluation.json").read_text())
    assert report["split"] == "test" and report["songs"] == 3
    assert len(report["songs_detail"]) == 3 and np.array(report["confusion"]).sum() == 3
    captured = capsys.readouterr()
    assert "song accuracy" in captured.out
    # the model card, finished by train with the test scores, introduces the checkpoint
    card = torch.load(out / "best.pt", weights_only=True)["card"]
    assert card["scores"]["test"]["song_accuracy"] == report["song_accuracy"]
    assert f"mssincresnet: model: {card['summary']}" in captured.err
    assert card["summary"] in (out / "MODEL_CARD.md").read_text()


def test_checkpoint_for_other_classes_is_a_clear_error(trained, music_folder, tmp_path, capsys):
    _, out, cache = trained
    other = tmp_path / "other"
    for name in ("x", "y"):
        (other / name).mkdir(parents=True)
        sf.write(other / name / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    code = main(["evaluate", str(other), "--checkpoint", str(out / "best.pt"),
                 "--cache-dir", str(cache), "--no-progress"])
    assert code == 2
    assert "trained for 3 classes" in capsys.readouterr().err


def test_bad_data_is_a_clear_error(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), *FAST]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), *FAST]) == 2
    assert "at least two class folders" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_reaches_its_accuracy(tmp_path, capsys):
    """The README's first command: synthetic corpus, compact model, held-out songs by vote."""
    assert main(["demo", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["test"]["song_accuracy"] >= 0.9, report["test"]
    assert report["splits"]["test"] == 36 and (tmp_path / "best.pt").is_file()
    assert (tmp_path / "MODEL_CARD.md").is_file()
    # its last line says what synthetic genres can show (issue 21), after the output paths
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == DEMO_SCOPE and lines[-2].startswith(f"wrote {tmp_path}/: best.pt")


def test_help_and_version_answer_without_loading_torch():
    """`mssincresnet --help` used to take 7-9 s on a loaded machine: it imported torch."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys\nfrom models.cli import main\n"
             "for argv in (['train', '--help'], ['export', '--help'], ['--version']):\n"
             "    try:\n        main(argv)\n    except SystemExit as stop:\n"
             "        assert stop.code == 0, argv\n"
             "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[3], timeout=120)
    assert result.returncode == 0, result.stderr
    words = " ".join(result.stdout.split())          # the help's own line breaks removed
    assert "random clips drawn per song and epoch (paper: 4, authors: 3)" in words
    assert "number of epochs (default 200)" in words
    assert result.stdout.strip().splitlines()[-1].startswith("mssincresnet (sincfb ")
