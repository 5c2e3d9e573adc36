"""The two recipes, value by value against their sources, and the pieces of the authors' one.

``authors`` values are checked against constants and expressions of their released code (GitHub
PeiChunChang/MS-SincResNet @ 95799db1d1866b83edf3d1873b3de34cef319e28: main.py, dataloader.py,
models.py), ``paper`` values against the paper's numbers as DESIGN.md §1 gives them; the README's
table is checked against the code that produces the configs.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import models.commands.demo
import models.data.cache
import models.data.splits
from models.data.audio import Framing
from models.cli import build_parser, main
from models.commands.settings import config_from_args
from models.data.cache import load_corpus
from models.data.clips import RandomClipDataset
from models.data.readers.synthetic import synthetic_tracklist
from models.data.splits import make_splits
from models.evaluation.results import vote
from models.training.recipes import SETTINGS, markdown_table, recipe_config
from models.training.config import TrainConfig
from models.training.trainer import EpochSampler, Trainer, learning_rate
from tests.models.conftest import tiny_train_config

README = Path(__file__).resolve().parents[3] / "README.md"

# Their code, line by line (values only).
fs, ex_sample = 16000, 2                          # dataloader.py: loader_GTZAN defaults
BATCH_SIZE, INIT_LR = 8, 0.005                    # main.py constants
CLIPS = 3                                         # dataloader.py: torch.randint(..., (3,))
AUTHORS = {
    "sample_rate": fs,
    "clip_seconds": fs * (1 + ex_sample) / fs,    # clip_data width
    "hop_seconds": (fs // 2) / fs,                # range(0, len, fs // 2)
    "frame_lookback_seconds": ex_sample * fs / fs,   # data[start - ex_sample * fs : start + fs]
    "fixed_seconds": fs * 30 / fs,                # signal.resample(data, fs * 30)
    "audio_scale": 2.0 ** 15,                     # scipy wavfile int16, never divided
    "clips_per_song": CLIPS,
    "batch_size": BATCH_SIZE * CLIPS,             # data.view(8 * 3, ...)
    "song_batches": True,
    "epochs": 200,                                # np.mean(song_acc[175:200])
    "lr": INIT_LR, "warmup_epochs": 5, "warmup_lr": 1e-05,     # if epoch < 5: warm_up(1e-05)
    "halve_every": 30, "halve_from": 0,           # if epoch % 30 == 0 and epoch != 0
    "momentum": 0.9, "nesterov": True, "weight_decay": 1e-04,  # optim.SGD(...)
    "gain": (0.2 / 2),                            # rand * 0.2 + 0.9: U[0.9, 1.1)
    "noise": "uniform", "noise_std": 0.02 / 2,    # (rand - 0.5) * 0.02: U[-0.01, 0.01)
    "spp": False,                                 # resnet18 avgpool + fc = Linear(512, 10)
    "backbone": "imagenet",                       # models.resnet18(pretrained=True)
    "vote": "majority", "tie_break": "lowest",    # np.argmax of the vote counts
}
# DESIGN.md §1: "3-second clips of raw audio at 16 kHz (48,000 samples, hop 0.5 s)", "ImageNet-
# initialised ResNet-18", "spatial pyramid pooling", "SGD (momentum 0.9, Nesterov, weight decay
# 1e-4), 5 warm-up epochs at lr 1e-5, then lr 0.005 halved every 30 epochs; each epoch draws 4
# random clips per song; ... U[0.9, 1.1] and ... Gaussian noise with sigma 0.02", "majority vote".
PAPER = {
    "sample_rate": 16000, "clip_seconds": 48000 / 16000, "hop_seconds": 0.5, "backbone": "imagenet",
    "spp": True, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "warmup_epochs": 5,
    "warmup_lr": 1e-5, "lr": 0.005, "halve_every": 30, "clips_per_song": 4, "gain": 0.1,
    "noise": "gaussian", "noise_std": 0.02, "vote": "majority",
    # the resolutions the README states
    "audio_scale": 1.0, "fixed_seconds": None, "frame_lookback_seconds": None, "halve_from": 0,
    "epochs": 200,
}


@pytest.mark.parametrize("name, source", [("authors", AUTHORS), ("paper", PAPER)])
def test_each_recipe_has_its_sources_values(name, source):
    config = recipe_config(name).to_dict()
    assert {key: config[key] for key in source} == source
    assert config["recipe"] == name and config["select_on"] == "valid"


def test_paper_is_the_default_config():
    assert TrainConfig() == recipe_config("paper")


def readme_table() -> dict:
    """{field: (paper cell, authors cell)} of the recipe table in README.md."""
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"`\w+`", cells[1]) and cells[1] != "`field`":
            rows[cells[1].strip("`")] = (cells[2], cells[4])
    return rows


def test_readme_table_is_the_code_table():
    assert markdown_table() in README.read_text()
    table = readme_table()
    assert sorted(table) == sorted(s.field for s in SETTINGS)
    paper, authors = recipe_config("paper").to_dict(), recipe_config("authors").to_dict()
    for field, (paper_cell, authors_cell) in table.items():
        for cell, value in ((paper_cell, paper[field]), (authors_cell, authors[field])):
            text = cell.strip("`")
            assert text == (value if isinstance(value, str) else repr(value)), field


def cli_config(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_cli_recipes_and_overrides(tmp_path):
    assert cli_config() == recipe_config("paper")
    assert cli_config("--recipe", "authors") == recipe_config("authors")
    overridden = cli_config("--recipe", "authors", "--clips-per-song", "5", "--fixed-seconds",
                            "none", "--no-song-batches", "--batch-size", "10", "--spp",
                            "--backbone", "random", "--tie-break", "probability")
    assert (overridden.clips_per_song, overridden.fixed_seconds, overridden.song_batches,
            overridden.batch_size, overridden.spp, overridden.backbone, overridden.tie_break) == \
        (5, None, False, 10, True, "random", "probability")
    assert overridden.audio_scale == 32768.0 and overridden.recipe == "authors"
    (tmp_path / "c.json").write_text(json.dumps({"recipe": "authors", "epochs": 7}))
    from_file = cli_config("--config", str(tmp_path / "c.json"), "--lr", "0.1")
    assert from_file == recipe_config("authors", epochs=7, lr=0.1)
    compact = cli_config("--recipe", "authors", "--compact")
    assert compact.clip_seconds == 0.5 and compact.frame_lookback_seconds == pytest.approx(1 / 3)


@pytest.mark.parametrize("change, message", [
    (dict(frame_lookback_seconds=3.0), "frame_lookback_seconds must be in"),
    (dict(song_batches=True, batch_size=10, clips_per_song=3), "multiple of clips_per_song"),
    (dict(tie_break="random"), "tie_break must be one of"),
    (dict(fixed_seconds=0.0), "fixed_seconds must be positive"),
])
def test_bad_recipe_values_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        recipe_config("authors", **change)


# ------------------------------------------------------------------ the authors' recipe, piece by piece
def their_frames(data, hop=16000 // 2, back=2 * 16000, clip=16000 * 3):
    """dataloader.py's loop, restated (hop fs // 2, look-back ex_sample * fs, clip
    fs * (1 + ex_sample)): len // hop frames of data[start - back : start - back + clip], the
    except branch taking data[start - back:] left-aligned when the slice is not a whole clip."""
    frames = np.zeros((len(data) // hop, clip))
    for i, start in enumerate(range(0, len(data), hop)):
        if i < len(frames):
            window = data[start - back: start - back + clip]
            if len(window) == clip:
                frames[i] = window
            else:
                tail = data[start - back:]
                frames[i, :len(tail)] = tail
    return frames


def test_authors_frames_and_their_edges():
    data = np.random.default_rng(0).standard_normal(480000)
    framing = recipe_config("authors").framing
    assert framing.count(480000) == 60 and framing.training_count(480000) == 59
    ours = framing.clips(data).numpy()[:, 0]
    np.testing.assert_allclose(ours, their_frames(data) * 32768, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(ours[0, :32000], np.float32(data[-32000:] * 32768))  # the end
    assert not ours[0, 32000:].any() and not ours[59, 40000:].any()


def test_authors_training_clips_are_frames_scaled_with_gain_and_tiny_noise(tmp_path):
    corpus = load_corpus(synthetic_tracklist(songs_per_genre=1, seconds=3.0), 16000, tmp_path,
                         progress=False, fixed_samples=16000 * 3)
    config = recipe_config("authors", clip_seconds=0.5, hop_seconds=0.25)
    framing = config.framing
    dataset = RandomClipDataset(corpus, np.arange(len(corpus)), config.clip_samples,
                                config.hop_samples, config.clips_per_song, 0, config.gain,
                                config.noise_std, config.noise, framing.lookback_samples,
                                framing.scale)
    track = corpus.track(0)
    frames = framing.clips(track).numpy()[:, 0].astype(np.float64)
    used = set()
    for epoch in range(40):
        dataset.set_epoch(epoch)
        for item in range(config.clips_per_song):          # song 0's clips
            clip = dataset[item][0].numpy()[0].astype(np.float64)
            fits = []
            for index, frame in enumerate(frames):
                energetic = np.abs(frame) > 1000
                if energetic.sum() < 100:
                    continue
                gain = np.median(clip[energetic] / frame[energetic])
                if np.abs(clip - gain * frame).max() <= 0.01 + 1e-2:
                    fits.append((index, gain))
            assert len(fits) == 1, fits
            index, gain = fits[0]
            assert 0.9 <= gain < 1.1 and index != len(frames) - 1
            used.add(index)
    assert len(used) > len(frames) // 2


def test_song_batches_keep_a_songs_clips_together():
    sampler = EpochSampler(size=10 * 3, seed=4, group=3)
    order = np.array(list(sampler))
    songs = order.reshape(-1, 3) // 3
    assert (songs == songs[:, :1]).all() and sorted(songs[:, 0]) == list(range(10))
    assert (order.reshape(-1, 3) % 3 == np.arange(3)).all()
    sampler.epoch = 1
    assert not np.array_equal(np.array(list(sampler)), order)
    shards = [EpochSampler(30, 4, rank, 2, group=3).order() for rank in (0, 1)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(30))
    assert all((s.reshape(-1, 3) // 3 == (s.reshape(-1, 3) // 3)[:, :1]).all() for s in shards)


def test_vote_ties():
    # two clips vote class 3, two vote class 1; class 3 has the higher mean probability
    probs = torch.tensor([[0.0, 0.1, 0.0, 0.9], [0.0, 0.2, 0.0, 0.8],
                          [0.0, 0.6, 0.0, 0.4], [0.0, 0.6, 0.0, 0.4]])
    assert vote(probs, "majority", "lowest")[0] == 1
    assert vote(probs, "majority", "probability")[0] == 3
    with pytest.raises(ValueError, match="tie_break"):
        vote(probs, "majority", "coin")


def test_select_on_test_warns_and_keeps_the_best_test_epoch(tmp_path, capsys):
    tracks = synthetic_tracklist(songs_per_genre=3, seconds=1.0, seed=1)
    corpus = load_corpus(tracks, 16000, tmp_path / "cache", progress=False)
    splits = make_splits(tracks, "cv", 0, 3, validation=False)
    assert len(splits["valid"]) == 0 and len(splits["train"]) == 12
    lines = []
    trainer = Trainer(tiny_train_config(epochs=2, select_on="test"), corpus, splits,
                      tmp_path / "run", progress=False, log=lines.append)
    history = trainer.fit()
    assert "mssincresnet: warning: select_on='test'" in capsys.readouterr().err
    scores = [row["test_song_accuracy"] for row in history]
    assert trainer.best["selected_on"] == "test"
    assert trainer.best["epoch"] == int(np.argmax(scores)) + 1        # main.py's np.argmax
    assert trainer.best["test_song_accuracy"] == max(scores)


def test_authors_recipe_trains_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    import soundfile as sf
    for genre in ("a", "b"):
        (tmp_path / "data" / genre).mkdir(parents=True)
        for i in range(3):
            sf.write(tmp_path / "data" / genre / f"{i}.wav",
                     (0.2 * rng.standard_normal(16000 * 3)).astype(np.float32), 16000, subtype="PCM_16")
    with pytest.warns(UserWarning, match="fixed duration of 2.8 s"):
        code = main(["train", str(tmp_path / "data"), "--recipe", "authors", "--compact",
                     "--fixed-seconds", "2.8", "--epochs", "1", "--batch-size", "3",
                     "--backend", "reference", "--backbone", "random", "--device", "cpu",
                     "--folds", "3", "--no-progress", "--warmup-epochs", "0",
                     "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["config"]["recipe"] == "authors" and report["config"]["song_batches"]
    clips = 16000 * 28 // 10 // 4000          # 2.8 s at hop 0.25 s: the authors' frame count
    assert report["test"]["clips"] == clips * report["test"]["songs"]


def test_imagenet_is_the_default_and_offline_is_a_clear_error(tmp_path, capsys):
    import soundfile as sf
    for genre in ("a", "b"):
        (tmp_path / "data" / genre).mkdir(parents=True)
        for i in range(3):
            sf.write(tmp_path / "data" / genre / f"{i}.wav",
                     0.1 * np.sin(np.arange(8000) / (3.0 + i)), 16000)
    args = ["train", str(tmp_path / "data"), "--compact", "--epochs", "1", "--warmup-epochs", "0",
            "--no-progress", "--folds", "3",
            "--device", "cpu", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2                              # downloads fail in tests, as offline
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backbone random" in err and "resnet18-f37072fd.pth" in err
    assert main(args + ["--backbone", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth' does not exist" in capsys.readouterr().err


class _Stop(Exception):
    """Raised by the stand-in of the demo's training step."""


def test_demo_says_it_uses_a_random_trunk_and_keeps_its_schedule(monkeypatch, capsys, tmp_path):
    seen = {}

    def record(config, *args):
        seen["config"] = config
        raise _Stop

    class NoCorpus:                             # the corpus is not synthesised: training stops
        classes, failures, name = [], [], "none"   # before it would be used

        def __len__(self):
            return 0

    monkeypatch.setattr(models.data.cache, "load_corpus", lambda *a, **k: NoCorpus())
    monkeypatch.setattr(models.data.splits, "make_splits", lambda *a, **k: {s: [] for s in ("train", "valid", "test")})
    monkeypatch.setattr(models.commands.demo, "train_one", record)
    with pytest.raises(_Stop):
        models.commands.demo.command_demo(build_parser().parse_args(["demo", "--out", str(tmp_path)]))
    assert "random trunk" in capsys.readouterr().out
    config = seen["config"]
    assert config.backbone == "random"
    s = models.commands.demo.DEMO_SETTINGS               # its schedule as it always was: halvings counted
    old = [s["warmup_lr"] if e < s["warmup_epochs"]       # from the end of the warm-up
           else s["lr"] * 0.5 ** ((e - s["warmup_epochs"]) // s["halve_every"]) for e in range(12)]
    assert [learning_rate(config, e) for e in range(12)] == old
