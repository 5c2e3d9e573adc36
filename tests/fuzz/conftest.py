"""Fixtures of the fuzz suite: honest checkpoints of each layout the project reads, written by
the real writers, for the checkpoint fuzz tests to damage."""
from __future__ import annotations

import pytest
import torch

from tests.models.conftest import no_weight_downloads, tiny_train_config  # noqa: F401 (autouse)


@pytest.fixture(scope="session")
def honest_checkpoint(honest_trainer):
    """``last.pt`` as :class:`models.train.Trainer` writes it (compact MS-SincResNet, before
    its first step: the format is the same, and no training time is spent)."""
    return honest_trainer.save("last.pt")


@pytest.fixture(scope="session")
def honest_trainer(tmp_path_factory):
    """A :class:`models.train.Trainer` of the compact MS-SincResNet on a tiny synthetic corpus,
    not trained (what ``train --resume`` resumes into)."""
    from models.data.cache import load_corpus
    from models.data.readers.synthetic import synthetic_tracklist
    from models.data.splits import make_splits
    from models.training.trainer import Trainer

    tracks = synthetic_tracklist(songs_per_genre=3, seconds=0.6, seed=1)
    corpus = load_corpus(tracks, 16000, tmp_path_factory.mktemp("cache"), progress=False)
    splits = make_splits(tracks, "cv", 0, 3)
    out = tmp_path_factory.mktemp("run")
    return Trainer(tiny_train_config(), corpus, splits, out, progress=False,
                   log=lambda *_: None)


@pytest.fixture(scope="session")
def authors_checkpoint(tmp_path_factory):
    """``(path, architecture)``: the authors' network (the stand-in of
    tests/models/authors_release.py) at the compact sizes, saved as their main.py saves it;
    ``architecture`` replaces ``models.authors.RELEASED_ARCHITECTURE`` while it is read."""
    from models import compact_config
    from tests.models.authors_release import ReleasedMSSincResNet, released_checkpoint

    cfg = compact_config("mssincresnet")
    sizes = {k: cfg[k] for k in ("num_filters", "kernel_sizes", "pool_bins", "clip_samples")}
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("authors") / "MS-SincResNet.tar"
    torch.save(released_checkpoint(ReleasedMSSincResNet(**sizes)), path)
    return path, {"kernel_sizes": sizes["kernel_sizes"], "pool_bins": sizes["pool_bins"],
                  "sample_rate": cfg["sample_rate"]}
