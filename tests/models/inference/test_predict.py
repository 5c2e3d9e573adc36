"""``mssincresnet predict`` and ``models.predict.classify`` on audio files the test writes: every
format, sample rate and channel count, a file shorter than a clip, a corrupt file."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile

from models.data.audio import clip_starts
from models.cli import main
from models.inference.predict import Classifier, classify, find_audio_files, load_classifier

# name -> (sample rate, seconds, channels, soundfile format); compact clips are 0.5 s, hop 0.25 s
SONGS = {
    "stereo44k.wav": (44100, 2.0, 2, "WAV"),
    "stereo44k.mp3": (44100, 2.0, 2, "MP3"),
    "sub/mono8k.flac": (8000, 2.0, 1, "FLAC"),
    "sub/deeper/mono8k.wav": (8000, 2.0, 1, "WAV"),
    "one_second.flac": (22050, 1.0, 1, "FLAC"),
    "short.wav": (16000, 0.3, 2, "WAV"),            # shorter than one clip: zero-padded
}
CORRUPT = "broken.wav"


def _song(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """A tremolo tone with noise (not silent, so the decoder accepts it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(rate * seconds))) / rate
    mono = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(4 * np.pi * t))
    mono += 0.05 * rng.standard_normal(t.size)
    return np.stack([mono, 0.7 * mono], axis=1) if channels == 2 else mono


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """A folder tree of the ``SONGS``, a corrupt .wav and a text file (not audio, ignored)."""
    root = tmp_path_factory.mktemp("songs")
    for seed, (name, (rate, seconds, channels, fmt)) in enumerate(SONGS.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(root / name, _song(rate, seconds, channels, seed), rate, format=fmt)
    (root / CORRUPT).write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio" * 4)
    (root / "notes.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def classifier(tiny_run) -> Classifier:
    return load_classifier(tiny_run / "best.pt", "cpu")


@pytest.fixture(scope="module")
def results(songs, classifier):
    return {r.path: r for r in classify([songs], classifier, batch_size=4)}


def expected_clips(seconds: float) -> int:
    """Clips of a track of ``seconds`` once resampled to the checkpoint's 16 kHz."""
    return len(clip_starts(int(round(seconds * 16000)), 8000, 4000))


def test_every_file_is_classified_or_named(songs, classifier, results):
    assert set(results) == {str(songs / n) for n in [*SONGS, CORRUPT]}    # notes.txt not taken
    for name, (_, seconds, _, _) in SONGS.items():
        r = results[str(songs / name)]
        assert r.ok, r.error
        assert r.genre in classifier.classes
        assert r.clips == expected_clips(seconds), name
        assert sum(r.vote_shares.values()) == pytest.approx(1.0)
        assert r.vote_share == pytest.approx(r.vote_shares[r.genre])      # majority vote
        assert r.vote_share == max(r.vote_shares.values())
        assert 0 < r.mean_probability <= 1
    broken = results[str(songs / CORRUPT)]
    assert not broken.ok and CORRUPT in broken.error and broken.genre is None
    assert results[str(songs / "short.wav")].clips == 1


def test_batch_size_and_device_do_not_change_decisions(songs, classifier, results):
    again = {r.path: r for r in classify([songs / "sub", songs / "stereo44k.wav"], classifier,
                                         batch_size=1)}
    for path, r in again.items():
        assert r.genre == results[path].genre
        assert r.vote_shares == pytest.approx(results[path].vote_shares)


def test_paths_are_expanded_once_and_missing_ones_reported(songs, tmp_path):
    files, problems = find_audio_files([songs / "sub", songs / "sub" / "mono8k.flac",
                                        tmp_path / "absent.wav", tmp_path])
    assert [f.name for f in files] == ["mono8k.wav", "mono8k.flac"]    # sorted, deduplicated
    errors = " ".join(p.error for p in problems)
    assert "absent.wav: no such file or folder" in errors and "no audio files" in errors


def test_bad_arguments_raise(songs, classifier):
    with pytest.raises(ValueError, match="batch size"):
        classify([songs], classifier, batch_size=0)
    with pytest.raises(ValueError, match="vote"):
        classify([songs], classifier, vote="median")


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``mssincresnet predict ARGV``."""
    status = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_json_parses_back(tiny_run, songs, capsys):
    status, out, err = run_cli(capsys, songs, "--checkpoint", tiny_run / "best.pt",
                               "--format", "json", "--device", "cpu", "--batch-size", "3")
    assert status == 0
    payload = json.loads(out)
    assert len(payload["results"]) == len(SONGS) and len(payload["classes"]) == 6
    assert [s["path"] for s in payload["skipped"]] == [str(songs / CORRUPT)]
    for r in payload["results"]:
        assert r["genre"] in payload["classes"] and r["clips"] >= 1
        assert set(r["vote_shares"]) == set(payload["classes"])
    assert CORRUPT in err                                   # the skipped file is named


def test_cli_csv_to_file_parses_back(tiny_run, songs, capsys, tmp_path):
    out_file = tmp_path / "out" / "genres.csv"
    status, out, err = run_cli(capsys, songs / "stereo44k.mp3", songs / "sub", "--checkpoint",
                               tiny_run / "best.pt", "--format", "csv", "--output", out_file,
                               "--vote", "mean", "--device", "cpu")
    assert status == 0 and out == ""
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert len(rows) == 3
    for row in rows:
        shares = [float(v) for k, v in row.items() if k.startswith("vote_")]
        assert len(shares) == 6 and sum(shares) == pytest.approx(1.0, abs=1e-3)
        assert 0 < float(row["genre_mean_probability"]) <= 1
        assert int(row["clips"]) == expected_clips(2.0)
        assert float(row["genre_vote_share"]) == pytest.approx(float(row[f"vote_{row['genre']}"]))


def test_cli_table_by_default(tiny_run, songs, capsys):
    status, out, _ = run_cli(capsys, songs / "one_second.flac", "--checkpoint",
                             tiny_run / "best.pt", "--device", "cpu")
    header, line = out.splitlines()
    assert header.split()[:5] == ["file", "genre", "genre_vote_share", "genre_mean_probability",
                                  "clips"]
    assert line.startswith(str(songs / "one_second.flac")) and status == 0


def test_exit_status_1_when_nothing_was_classified(tiny_run, songs, capsys, tmp_path):
    status, out, err = run_cli(capsys, songs / CORRUPT, tmp_path / "gone.flac",
                               "--checkpoint", tiny_run / "best.pt", "--device", "cpu")
    assert status == 1
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["(skipped)", "(skipped)"]
    assert CORRUPT in err and "gone.flac" in err


def test_missing_checkpoint_is_a_usage_error(songs, capsys, tmp_path):
    status, _, err = run_cli(capsys, songs, "--checkpoint", tmp_path / "nope.pt")
    assert status == 2 and "nope.pt: no such checkpoint" in err
    status, _, err = run_cli(capsys, songs, "--checkpoint", tmp_path / "nope.pt", "--batch-size", "0")
    assert status == 2 and "--batch-size" in err


@pytest.mark.parametrize("spp", [True, False])
def test_inference_preparation_keeps_the_logits(spp):
    """Folding the trunk's BatchNorms and switching to channels-last changes no decision."""
    import copy

    import torch

    from models.inference.predict import prepare_for_inference
    from tests.models.helpers import compact_clips, compact_model, randomise_batch_norms

    model = compact_model("mssincresnet", spp=spp).eval()
    randomise_batch_norms(model, torch.Generator().manual_seed(0))
    clips = compact_clips("mssincresnet", batch=3)
    prepared = prepare_for_inference(copy.deepcopy(model), "cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    with torch.no_grad():
        torch.testing.assert_close(prepared(clips), model(clips), rtol=1e-4, atol=1e-4)
