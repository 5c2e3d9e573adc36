"""``mssincresnet predict`` and ``evaluate`` directly on the authors' released checkpoint file.

The checkpoint is the stand-in of :mod:`tests.models.authors_release` (their models.py, GitHub
PeiChunChang/MS-SincResNet @ 95799db1) with random weights, at the compact sizes to stay fast,
saved as their main.py saves it. The expected decisions are computed here the way their
dataloader.py and main.py compute them: the int16 samples of the file resampled to 30 s, the 60
frames of ``their_frames``, their network, and ``np.argmax`` of the frame-vote counts.
"""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import models.training.authors
from models import compact_config
from models.data.audio import load_audio
from models.cli import main
from models.data.readers.gtzan import GTZAN_GENRES
from tests.models.authors_release import ReleasedMSSincResNet, released_checkpoint
from tests.models.training.test_recipes import their_frames

CFG = compact_config("mssincresnet")
N = CFG["clip_samples"]                  # 0.5-s clips: frames span [start - 1/3 s, start + 1/6 s)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Their network at the compact sizes, saved as checkpoint_12.tar, and the loader's record
    of their (unrecorded) filter lengths and pooling size set to match for the module."""
    torch.manual_seed(5)
    theirs = ReleasedMSSincResNet(CFG["num_filters"], CFG["kernel_sizes"], CFG["pool_bins"], N)
    with torch.no_grad():
        for bank in (theirs.sincNet1, theirs.sincNet2, theirs.sincNet3):
            bank[1].running_mean.normal_(0, 0.1)
            bank[1].running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("theirs") / "checkpoint_12.tar"
    torch.save(released_checkpoint(theirs.eval(), epoch=12), path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models.training.authors, "RELEASED_ARCHITECTURE",
                      {"kernel_sizes": CFG["kernel_sizes"], "pool_bins": CFG["pool_bins"],
                       "sample_rate": 16000})
        yield theirs, path


def gtzan_like(path, seconds, seed):
    """A 22.05-kHz int16 file, as GTZAN's."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 22050)) / 22050
    wave = 0.3 * np.sin(2 * np.pi * (150 + 60 * seed) * t) * (1 + np.sin(2 * np.pi * 2 * t))
    sf.write(path, wave + 0.05 * rng.standard_normal(t.size), 22050, subtype="PCM_16")


def their_decision(theirs, path):
    """(genre index, vote counts) as their code reaches them for ``path``, at this clip size:
    the 30-s resampled int16 signal, 60 frames (hop 0.5 s, the look-back 2/3 of the clip as in
    theirs), their network, np.argmax of the counts."""
    data = load_audio(path, fixed_samples=480000).astype(np.float64) * 32768
    frames = their_frames(data, hop=8000, back=round(N * 2 / 3), clip=N)
    with torch.no_grad():
        logits = theirs(torch.from_numpy(frames).float()[:, None])[0]
    counts = np.bincount(logits.argmax(1).numpy(), minlength=10)
    return int(np.argmax(counts)), counts


def test_predict_on_their_checkpoint(release, tmp_path, capsys):
    theirs, checkpoint = release
    files = [tmp_path / "short.wav", tmp_path / "thirty.wav"]
    gtzan_like(files[0], 3.0, 1)
    gtzan_like(files[1], 30.0, 2)
    assert main(["predict", *map(str, files), "--checkpoint", str(checkpoint), "--format", "json",
                 "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "does not record its class order; assuming GTZAN's alphabetical order" in err
    payload = json.loads(out)
    assert payload["classes"] == list(GTZAN_GENRES) and "assuming GTZAN's" in payload["note"]
    for path, result in zip(files, payload["results"]):
        winner, counts = their_decision(theirs, path)
        assert result["clips"] == 60
        assert result["genre"] == GTZAN_GENRES[winner]
        shares = np.array([result["vote_shares"][g] for g in GTZAN_GENRES])
        assert np.abs(shares - counts / 60).max() <= 1 / 60 + 1e-4   # a near-tied frame may flip
    names = [f"class{i}" for i in range(10)]
    assert main(["predict", str(files[1]), "--checkpoint", str(checkpoint), "--format", "json",
                 "--classes", ",".join(names), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "class order" not in err and "note" not in json.loads(out)
    assert json.loads(out)["results"][0]["genre"] in names


def test_evaluate_on_their_checkpoint(release, tmp_path, capsys):
    theirs, checkpoint = release
    for i, genre in enumerate(GTZAN_GENRES):
        (tmp_path / "genres" / genre).mkdir(parents=True)
        gtzan_like(tmp_path / "genres" / genre / f"{genre}.00000.wav", 30.0, i)
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(tmp_path), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--device", "cpu"]) == 0
    assert "assuming GTZAN's alphabetical order" in capsys.readouterr().err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["split"] == "all" and report["songs"] == 10 and report["clips"] == 600
    assert report["recipe"] == "authors" and report["class_order"] == "assumed"
    for genre, song in zip(GTZAN_GENRES, report["songs_detail"]):
        winner, counts = their_decision(theirs, tmp_path / "genres" / genre / f"{genre}.00000.wav")
        shares = np.array([song["vote_shares"][g] for g in GTZAN_GENRES])
        assert song["clips"] == 60 and np.abs(shares - counts / 60).max() <= 1 / 60 + 1e-4
        assert song["predicted"] == GTZAN_GENRES[winner] or np.sort(counts)[-2] >= counts.max() - 1
    assert main(["evaluate", str(tmp_path), "--checkpoint", str(checkpoint), "--classes",
                 "a,b,c,d,e,f,g,h,i,j", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                 "--out", str(out)]) == 2
    assert "are not in --classes" in capsys.readouterr().err
