"""What a user met training on real music (issue 21, "What a user hit on the way"), one test or
more per item: flags honoured, cards that describe the trained model, a predefined split named as
such, a data summary and output paths, wall times, the warm-up warning, no CUDA_HOME line on a
machine without CUDA, no progress bars in redirected output, and predict's numbers named for
what they are."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from models.cli import build_parser, main
from models.commands.train import WARMUP_SHARE

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--compact", "--batch-size", "8", "--clips-per-song", "1", "--device", "cpu"]


def settings(*argv):
    """The TrainConfig that ``mssincresnet train DATA ARGV`` would train with."""
    from models.commands.settings import config_from_args

    return config_from_args(build_parser().parse_args(["train", "data", *argv]))


# ------------------------------------------------------------------- 1: flags are honoured
def test_compact_keeps_the_clip_and_hop_the_user_gives():
    from models import COMPACT

    compact_clip = COMPACT["clip_samples"] / COMPACT["sample_rate"]
    plain = settings("--compact")
    assert (plain.clip_seconds, plain.hop_seconds) == (compact_clip, compact_clip / 2)
    long_clips = settings("--compact", "--clip-seconds", "3")
    assert long_clips.clip_seconds == 3.0 and long_clips.hop_seconds == 1.5   # hop: half a clip
    assert long_clips.model_kwargs == plain.model_kwargs                      # still compact
    assert settings("--compact", "--clip-seconds", "3", "--hop-seconds", "0.7").hop_seconds == 0.7
    # the authors' look-back keeps its share (2 s of 3) of the compact clip, or is the user's
    assert settings("--compact", "--recipe", "authors").frame_lookback_seconds == \
        pytest.approx(2.0 * compact_clip / 3.0)
    assert settings("--compact", "--recipe", "authors", "--clip-seconds", "3") \
        .frame_lookback_seconds == pytest.approx(2.0)


@pytest.mark.parametrize("clip", [1.5, 0.75])
def test_a_clip_of_ones_own_keeps_the_lookback_share_as_in_python(clip):
    """``--recipe authors --clip-seconds C`` is :func:`models.recipes.recipe_config`'s
    ``clip_seconds=C``: the look-back keeps its 2 s of 3 (it used to stay 2 s, an error)."""
    from models.training.recipes import recipe_config

    want = recipe_config("authors", clip_seconds=clip)
    got = settings("--recipe", "authors", "--clip-seconds", str(clip))
    assert got.frame_lookback_seconds == pytest.approx(2.0 * clip / 3.0)
    assert got.to_dict() == {**want.to_dict(), "recipe": "authors"}
    assert settings("--recipe", "authors", "--clip-seconds", str(clip),
                    "--frame-lookback-seconds", "0.5").frame_lookback_seconds == 0.5


def test_compact_keeps_the_clip_of_a_config_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"clip_seconds": 2.0, "sample_rate": 8000}))
    config = settings("--compact", "--config", str(path))
    assert (config.clip_seconds, config.sample_rate, config.clip_samples) == (2.0, 8000, 16000)


def test_compact_model_trains_on_the_clips_given():
    """The model built from ``--compact --clip-seconds 3`` takes 3-s clips end to end."""
    import torch

    from models.training.checkpoints import build_from_config

    config = settings("--compact", "--clip-seconds", "3", "--backend", "reference")
    model = build_from_config(config.model, 4, config.model_kwargs, config.sample_rate,
                              config.clip_samples, config.spp, "random").eval()
    seed = 11
    print("seed", seed)
    clip = torch.randn(2, 1, 3 * config.sample_rate, generator=torch.Generator().manual_seed(seed))
    assert config.clip_samples == 48000
    with torch.no_grad():
        assert model(clip).shape == (2, 4)


# ----------------------------------------------- 6: the warm-up warning fires on a large share
@pytest.mark.parametrize("epochs,warmup", [(200, 5), (20, 5), (21, 5), (8, 5), (5, 5), (3, 5),
                                           (12, 1), (4, 1), (10, 0)])
def test_warmup_warning_fires_when_the_warmup_takes_a_large_share(epochs, warmup, capsys):
    from models.commands.train import _warn_about_schedule

    _warn_about_schedule(settings("--epochs", str(epochs), "--warmup-epochs", str(warmup)))
    err = capsys.readouterr().err
    large = warmup > 0 and warmup / epochs >= WARMUP_SHARE
    assert ("warm-up" in err) == large, (epochs, warmup, err)
    if large and epochs <= warmup:
        assert "the whole run trains at the warm-up rate" in err
    elif large:
        assert f"{warmup} of the {epochs} epochs ({warmup / epochs:.0%})" in err


# ---------------------------------------- 2: cards describe the model trained (SincNet flags)
def card_of(**changes):
    from models.training.card import build_card
    from tests.models.conftest import tiny_train_config

    config = tiny_train_config(**changes)
    return build_card(config=config, classes=["a", "b"], dataset="d",
                      split_sizes={"train": 2, "valid": 1, "test": 1},
                      split_spec={"protocol": "predefined", "seed": 0}, parameters=10,
                      epoch=0, best={}, history=[], scores={}, device="cpu")


def test_sincnet_card_has_neither_spatial_pyramid_nor_trunk():
    from models import compact_config
    from models.training.card import card_markdown

    kwargs = {k: v for k, v in compact_config("sincnet").items()
              if k not in ("sample_rate", "clip_samples")}
    card = card_of(model="sincnet", model_kwargs=kwargs, spp=True, backbone="imagenet")
    assert card["trunk"] is None and card["model"]["spp"] is None
    assert "no trunk" in card["summary"] and "imagenet" not in card["summary"]
    text = card_markdown(card)
    assert "spatial pyramid pooling (paper)" not in text
    assert "imagenet" not in text.split("## Recipe")[0]
    assert "| trunk initialisation | none: the model has no ResNet trunk |" in text
    assert "the dataset's own train/valid/test split (predefined)" in text and "folds" not in text


def test_resnet_cards_name_their_head_and_trunk():
    from models.training.card import card_markdown

    paper = card_of(spp=True, backbone="random")
    assert paper["trunk"] == "random" and "trunk random" in paper["summary"]
    assert "| head | spatial pyramid pooling (paper) |" in card_markdown(paper)
    assert "| head | global average pool + fc |" in card_markdown(card_of(spp=False))


@pytest.mark.parametrize("flags,message", [
    (["--backbone", "imagenet"], "sincnet has no ResNet trunk to initialise"),
    (["--backbone", "weights.pth"], "sincnet has no ResNet trunk to initialise"),
    (["--spp"], "sincnet has no spatial pyramid pooling head"),
    (["--backend", "reference"], "sincnet has no sincfb filterbank layer")])
def test_sincnet_refuses_flags_for_parts_it_lacks(flags, message, tmp_path, capsys):
    code = main(["train", str(tmp_path / "never-read"), "--model", "sincnet", *TINY, *flags,
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not (tmp_path / "run").exists()          # refused before any work


# ------------------------------------------- 3, 4, 5, 7, 8: a whole run on a predefined split
SPLIT_OF_SONG = ("train", "train", "valid", "test")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A manifest that declares its own split: 3 genres x 4 songs (2 train, 1 valid, 1 test),
    22.05 kHz files, plus one corrupt file that the run skips."""
    from models.data.synthetic import GENRES, synthesize_song

    root = tmp_path_factory.mktemp("manifest")
    rows = []
    for label, genre in enumerate(GENRES[:3]):
        for i, split in enumerate(SPLIT_OF_SONG):
            song = synthesize_song(genre, 1.5, 22050, np.random.default_rng([label, i, 5]))
            sf.write(root / f"{genre.name}-{i}.wav", song, 22050)
            rows.append(f"{genre.name}-{i}.wav,{genre.name},{split}")
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    rows.append(f"broken.wav,{GENRES[0].name},train")
    (root / "list.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return root / "list.csv"


@pytest.fixture(scope="module")
def sincnet_run(manifest, tmp_path_factory):
    """``train`` of the compact SincNet with ``--backbone random`` and a warm-up of half the
    epochs, its output redirected (not a terminal) and progress bars not switched off."""
    out = tmp_path_factory.mktemp("sincnet") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["train", str(manifest), "--model", "sincnet", *TINY, "--epochs", "2",
                     "--warmup-epochs", "1", "--backbone", "random", "--out", str(out),
                     "--cache-dir", str(tmp_path_factory.mktemp("cache"))])
    return code, out, stdout.getvalue(), stderr.getvalue()


def test_run_summarises_its_data_before_training_and_its_outputs_after(sincnet_run):
    code, out, stdout, _ = sincnet_run
    assert code == 0, stdout
    lines = stdout.splitlines()
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch"))
    data, split = lines[0], lines[1]
    assert first_epoch == 2
    assert data.startswith("data: list, 12 songs in 3 classes (")
    assert "1 file(s) skipped" in data
    evaluated = 3 * len(range(0, 24000 - 8000 + 1, 4000))      # 3 songs of 1.5 s at 16 kHz
    assert split.startswith("split: the dataset's own train/valid/test split (predefined)")
    assert "train 6 songs (1 random clip(s) of each per epoch: 6)" in split
    assert f"valid 3 songs ({evaluated} clips" in split
    assert f"test 3 songs ({evaluated} clips" in split
    wrote = lines[-1]
    assert wrote.startswith(f"wrote {out}/: best.pt, MODEL_CARD.md, last.pt, report.json, log.csv")
    assert all((out / name).is_file() for name in re.findall(r"[\w.]+\.(?:pt|md|json|csv|png)",
                                                             wrote.split(": ", 1)[1]))


def test_predefined_split_is_named_as_such_everywhere(sincnet_run):
    code, out, stdout, _ = sincnet_run
    assert "fold" not in stdout
    assert re.search(r"^the dataset's own train/valid/test split \(predefined\), seed 0: test "
                     r"song accuracy [\d.]+, clip accuracy [\d.]+$", stdout, re.M), stdout
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == {"protocol": "predefined", "seed": 0} and "fold" not in report
    card = (out / "MODEL_CARD.md").read_text()
    assert "| split | the dataset's own train/valid/test split (predefined), seed 0 |" in card
    assert "folds" not in card and "fold 0" not in card


def test_cross_validation_flags_on_a_predefined_split_are_an_error(manifest, tmp_path, capsys):
    code = main(["train", str(manifest), "--model", "sincnet", *TINY, "--epochs", "1",
                 "--folds", "3", "--out", str(tmp_path / "run"), "--no-progress",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert "--folds: cross-validation flags" in capsys.readouterr().err


def test_sincnet_card_and_summary_of_a_trained_run(sincnet_run):
    from models.inference.predict import load_classifier

    code, out, _, stderr = sincnet_run
    assert "note: sincnet has no ResNet trunk; all its layers start random" in stderr
    card = (out / "MODEL_CARD.md").read_text()
    assert "spatial pyramid" not in card.split("## Data")[0].replace("(no spatial pyramid", "")
    assert "none: the model has no ResNet trunk" in card
    summary = load_classifier(out / "best.pt", "cpu").summary      # what predict prints
    assert "sincnet" in summary and "no trunk" in summary and "trunk random" not in summary


def test_times_are_wall_times_with_the_step_time_beside(sincnet_run):
    from models.base.logs import read_log_csv

    _, out, _, _ = sincnet_run
    rows = read_log_csv(out / "log.csv")
    assert len(rows) == 2 and "seconds" not in rows[0]
    for row in rows:       # an epoch's wall time holds its training steps and its evaluation
        assert 0 < row["step_seconds"] <= row["wall_seconds"]
    report = json.loads((out / "report.json").read_text())
    assert report["wall_seconds"] >= sum(r["wall_seconds"] for r in rows) - 0.1
    card = (out / "MODEL_CARD.md").read_text()
    wall, steps = (round(sum(r[key] for r in rows)) for key in ("wall_seconds", "step_seconds"))
    assert re.search(rf"\| time \| {wall:.0f} s wall time over the epochs \(training, evaluation\)"
                     rf", {steps:.0f} s of it in training steps \|", card), card


def test_redirected_run_has_no_progress_bars_and_no_cuda_home_line(sincnet_run):
    _, _, stdout, stderr = sincnet_run
    assert "\r" not in stdout + stderr
    assert "No CUDA runtime" not in stderr
    # 2 epochs, 1 of warm-up: half the run at the warm-up rate is warned about
    assert "1 of the 2 epochs (50%) train at the warm-up rate" in stderr


# ---------------------------------------------------- 8: progress bars only on a terminal
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_training_evaluation_shows_progress_on_a_terminal_only(terminal, tmp_path, monkeypatch):
    from models.data.cache import load_corpus
    from models.data.readers.synthetic import synthetic_tracklist
    from models.data.splits import make_splits
    from models.training.trainer import Trainer
    from tests.models.conftest import tiny_train_config

    tracks = synthetic_tracklist(songs_per_genre=3, seconds=1.0, seed=4)
    corpus = load_corpus(tracks, 16000, tmp_path / "cache", progress=False)
    trainer = Trainer(tiny_train_config(), corpus, make_splits(tracks, "cv", 0, 3), tmp_path,
                      progress=True, log=lambda *_: None)
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    trainer.evaluate("test")
    shown = stream.getvalue()
    assert ("evaluating the test songs" in shown and "\r" in shown) if terminal else shown == ""


# ------------------------------------------ 7: torch's CUDA_HOME line on a machine without CUDA
def test_cuda_home_line_is_dropped_and_nothing_else(tmp_path):
    """A CUDA build of torch on a machine without a usable GPU but with a CUDA toolkit folder
    logs "No CUDA runtime is found, using CUDA_HOME=..." when torch.utils.cpp_extension is
    imported (torch/utils/cpp_extension.py, _find_cuda_home). The probe makes this machine
    such a one whatever it is, builds or loads the kernels, then calls torch's function again
    outside the build: the line shows there and only there; another message of that logger
    shows inside the quiet block."""
    probe = "\n".join([
        "import logging, sys, torch",
        "torch.cuda._is_compiled = lambda: True",
        "torch.cuda.is_available = lambda: False",
        "torch.version.cuda = '12.8'",
        "from sincfb import _build",
        "assert _build.load_cpu_extension() or _build.build_error()",
        "print('MARK built', file=sys.stderr, flush=True)",
        "with _build.quiet_cuda_home_notice():",
        "    logging.getLogger('torch.utils.cpp_extension').warning('another message')",
        "print('MARK other', file=sys.stderr, flush=True)",
        "from torch.utils import cpp_extension",
        "cpp_extension._find_cuda_home()",
    ])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "CUDA_HOME": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    before, rest = done.stderr.split("MARK built")
    inside, after = rest.split("MARK other")
    notice = f"No CUDA runtime is found, using CUDA_HOME='{tmp_path}'"
    assert "No CUDA runtime" not in before + inside
    assert "another message" in inside
    assert after.count(notice) == 1          # the stand-in machine is one that logs the line


# --------------------------------------------- 8: predict's numbers are named for what they are
def test_predict_names_vote_share_and_mean_probability(tiny_run, tmp_path, capsys):
    """JSON, CSV and table give the genre's vote share and mean probability, checked against
    the clip probabilities computed here from the model itself."""
    import torch

    from models.data.audio import load_audio
    from models.inference.predict import load_classifier
    from models.data.synthetic import GENRES, synthesize_song

    seed = 21
    print("seed", seed)
    path = tmp_path / "song.wav"
    sf.write(path, synthesize_song(GENRES[2], 2.5, 16000, np.random.default_rng(seed)), 16000)
    classifier = load_classifier(tiny_run / "best.pt", "cpu")
    track = load_audio(path, classifier.sample_rate)
    clips = classifier.framing.clips(track, range(classifier.framing.count(len(track))))
    with torch.no_grad():
        probabilities = torch.softmax(classifier.model(clips).double(), -1).numpy()
    mean = probabilities.mean(0)
    winner = int(mean.argmax())
    share = float(np.mean(probabilities.argmax(1) == winner))
    capsys.readouterr()                                  # the seed line is not predict's output

    assert main(["predict", str(path), "--checkpoint", str(tiny_run / "best.pt"), "--vote",
                 "mean", "--format", "json", "--device", "cpu"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert "confidence" not in result and result["genre"] == classifier.classes[winner]
    assert result["genre_mean_probability"] == pytest.approx(mean[winner], abs=1e-3)
    assert result["genre_vote_share"] == pytest.approx(share, abs=1e-4)
    assert result["genre_vote_share"] == pytest.approx(result["vote_shares"][result["genre"]],
                                                       abs=1e-4)

    assert main(["predict", str(path), "--checkpoint", str(tiny_run / "best.pt"), "--vote",
                 "mean", "--format", "csv", "--device", "cpu"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert float(row["genre_mean_probability"]) == pytest.approx(mean[winner], abs=1e-3)
    assert float(row["genre_vote_share"]) == pytest.approx(share, abs=1e-4)
    assert "confidence" not in row

    assert main(["predict", str(path), "--checkpoint", str(tiny_run / "best.pt"),
                 "--device", "cpu"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["file", "genre", "genre_vote_share", "genre_mean_probability", "clips",
                      "votes"]


# ----------------------------------------------------------- the demo says what it shows
def test_demo_scope_points_to_a_real_recordings_section():
    from models.commands.demo import DEMO_SCOPE

    readme = (ROOT / "README.md").read_text()
    assert "## Real recordings" in readme.splitlines()
    assert "not musical understanding" in DEMO_SCOPE and "'Real recordings'" in DEMO_SCOPE
    demo = readme.split("`make demo` runs `mssincresnet demo`.", 1)[1].split("\n\n", 1)[0]
    demo = " ".join(demo.split())                     # the paragraph without its line breaks
    assert "not musical understanding" in demo and "(#real-recordings)" in demo


@pytest.mark.parametrize("protocol,remedy", [
    ("cv", "use fewer --folds"), ("predefined", "give each split songs of every class")])
def test_a_split_without_a_class_gets_the_remedy_of_its_protocol(protocol, remedy, capsys):
    from types import SimpleNamespace

    from models.commands.train import _warn_about_splits

    corpus = SimpleNamespace(labels=np.array([0, 1, 0, 0, 0, 1]), classes=["a", "b"])
    splits = {"train": np.array([0, 1]), "valid": np.array([2, 3]), "test": np.array([4, 5])}
    _warn_about_splits(splits, corpus, protocol)
    err = capsys.readouterr().err
    assert "the valid split (2 songs) holds no song of class(es) b" in err and remedy in err
    assert "test split" not in err and ("--folds" in err) == (protocol == "cv")
