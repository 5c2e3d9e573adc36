"""Training: the schedule, exact resume (also after Ctrl-C inside an epoch), crash-safe files."""
import json
import os
import signal

import numpy as np
import pytest
import torch

from models.data.cache import load_corpus
from models.data.readers.synthetic import synthetic_tracklist
from models.data.splits import make_splits
from models.base.datafiles import CheckpointError
from models.training.checkpoints import load_checkpoint
from models.training.config import TrainConfig
from models.base.fileio import atomic_torch_save
from models.base.logs import read_log_csv
from models.training.trainer import Trainer, learning_rate
from tests.models.conftest import tiny_train_config


def tiny_config(**overrides):
    """The shared tiny configuration, trained for two epochs with a warm-up and halving."""
    schedule = dict(epochs=2, warmup_epochs=1, warmup_lr=0.001, halve_every=1)
    return tiny_train_config(**{**schedule, **overrides})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tracks = synthetic_tracklist(songs_per_genre=3, seconds=1.0, seed=1)
    return load_corpus(tracks, 16000, tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module")
def splits(corpus):
    return make_splits(synthetic_tracklist(songs_per_genre=3, seconds=1.0, seed=1), "cv", 0, 3)


def authors_main_py_rates(epochs: int) -> list[float]:
    """The learning rate of every epoch as the authors' main.py sets it (PeiChunChang/
    MS-SincResNet @ 95799db1): 1e-5 while epoch < 5, INIT_LR = 0.005 at epoch 5, and the current
    rate halved whenever epoch % 30 == 0 and epoch != 0 (applied to the rate in place)."""
    rates, lr = [], 0.005
    for epoch in range(epochs):
        if epoch < 5:
            lr = 1e-5
        if epoch == 5:
            lr = 0.005
        if epoch % 30 == 0 and epoch != 0:
            lr *= 0.5
        rates.append(lr)
    return rates


def test_default_schedule_is_the_authors_one():
    """The paper's 'halved every 30 epochs' read as main.py does: at epochs 30, 60, ..."""
    config = TrainConfig()
    assert [learning_rate(config, e) for e in range(200)] == authors_main_py_rates(200)
    assert learning_rate(config, 29) == 0.005 and learning_rate(config, 30) == 0.0025
    shifted = TrainConfig(halve_from=5)          # the old reading: 30 epochs after warm-up
    assert learning_rate(shifted, 34) == 0.005 and learning_rate(shifted, 35) == 0.0025


def test_config_file_round_trip_and_unknown_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"epochs": 7, "lr": 0.1}))
    assert TrainConfig.from_file(path).epochs == 7
    (tmp_path / "c.toml").write_text("epochs = 3\nnoise = 'uniform'\n")
    assert TrainConfig.from_file(tmp_path / "c.toml").noise == "uniform"
    path.write_text(json.dumps({"epoch": 7}))
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_file(path)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


@pytest.mark.parametrize("mixup", [0.0, 0.4])      # mixup draws from the generator a resume restores
def test_resume_continues_exactly(corpus, splits, tmp_path, mixup):
    straight = Trainer(tiny_config(mixup=mixup), corpus, splits, tmp_path / "a", progress=False,
                       log=lambda *_: None)
    straight.fit()
    first = Trainer(tiny_config(epochs=1, mixup=mixup), corpus, splits, tmp_path / "b",
                    progress=False, log=lambda *_: None)
    first.fit()
    resumed = Trainer(tiny_config(mixup=mixup), corpus, splits, tmp_path / "b", progress=False,
                      log=lambda *_: None)
    resumed.resume(tmp_path / "b" / "last.pt")
    resumed.fit()
    for a, b in zip(straight.history, resumed.history):
        for key in ("train_loss", "train_clip_accuracy", "valid_song_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
    torch.testing.assert_close(_weights(straight.model), _weights(resumed.model))
    rows = read_log_csv(tmp_path / "b" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert json.loads((tmp_path / "b" / "log.json").read_text())[1]["epoch"] == 2


def test_ctrl_c_inside_an_epoch_saves_and_resumes_exactly(corpus, splits, tmp_path):
    straight = Trainer(tiny_config(), corpus, splits, tmp_path / "a", progress=False, log=lambda *_: None)
    straight.fit()
    interrupted = Trainer(tiny_config(), corpus, splits, tmp_path / "b", progress=False, log=lambda *_: None)
    real_step, calls = interrupted.optimizer.step, []

    def step_then_interrupt(*args, **kwargs):
        calls.append(1)
        result = real_step(*args, **kwargs)
        if len(calls) == 5:                 # Ctrl-C during the second step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return result

    interrupted.optimizer.step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    saved = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) == (1, 2)
    resumed = Trainer(tiny_config(), corpus, splits, tmp_path / "b", progress=False, log=lambda *_: None)
    resumed.resume(tmp_path / "b" / "last.pt")
    resumed.fit()
    assert resumed.history[-1]["train_loss"] == pytest.approx(straight.history[-1]["train_loss"], rel=1e-6)
    torch.testing.assert_close(_weights(straight.model), _weights(resumed.model))


def test_checkpoint_for_other_classes_is_refused(corpus, splits, tmp_path):
    trainer = Trainer(tiny_config(epochs=1), corpus, splits, tmp_path, progress=False, log=lambda *_: None)
    trainer.fit()
    model, state = load_checkpoint(tmp_path / "best.pt", classes=corpus.classes)
    assert state["classes"] == corpus.classes
    with pytest.raises(CheckpointError, match="trained for 6 classes"):
        load_checkpoint(tmp_path / "best.pt", classes=["a", "b"])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_a_crash_while_saving_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"version": 1}, path)

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        atomic_torch_save({"version": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
