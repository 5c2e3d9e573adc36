"""Fixtures shared by the model tests: one tiny trained run for predict and the figures."""
from __future__ import annotations

import pytest


def tiny_train_config(**overrides):
    """The compact MS-SincResNet on the reference backend, one short epoch on the CPU, from a
    random trunk (tests never download ImageNet weights)."""
    from models import compact_config
    from models.training.config import TrainConfig

    kwargs = compact_config("mssincresnet")
    sample_rate, clip = kwargs.pop("sample_rate"), kwargs.pop("clip_samples")
    kwargs["backend"] = "reference"
    values = dict(model="mssincresnet", model_kwargs=kwargs, sample_rate=sample_rate,
                  clip_seconds=clip / sample_rate, hop_seconds=0.25, epochs=1, batch_size=4,
                  clips_per_song=2, lr=0.01, warmup_epochs=0, device="cpu", seed=3,
                  backbone="random")
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(autouse=True)
def no_weight_downloads(monkeypatch):
    """Tests never download: torchvision's weight download fails as it would offline (a test
    that wants weights replaces it again; an accidental 'imagenet' default fails loudly)."""
    from urllib.error import URLError

    import torchvision.models._api as weights_api

    def offline(url, *args, **kwargs):
        raise URLError(f"tests do not download ({url})")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder (best.pt, last.pt, log.csv ...) of one epoch on a tiny synthetic corpus.

    Session-scoped: training takes a few seconds, and the predict and plot tests only read it.
    """
    from models.data.cache import load_corpus
    from models.data.readers.synthetic import synthetic_tracklist
    from models.data.splits import make_splits
    from models.training.trainer import Trainer

    tracks = synthetic_tracklist(songs_per_genre=3, seconds=1.0, seed=1)
    corpus = load_corpus(tracks, 16000, tmp_path_factory.mktemp("cache"), progress=False)
    splits = make_splits(tracks, "cv", 0, 3)
    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_train_config(), corpus, splits, out, progress=False, log=lambda *_: None).fit()
    return out
