"""bench.real_music: the manifest builder on a fake Debian package tree of synthetic audio, the
split by track, the classical features against float64 numpy oracles, the logistic regression,
and the comparison runner with a stand-in for ``models train``.

The fake tree has dpkg's layout (``var/lib/dpkg/status`` paragraphs, ``info/<package>.list``
listing absolute paths, ``usr/share/doc/<package>/copyright``), as dpkg(1) and deb-control(5)
describe it; the packages' music is generated here, so the suite stays offline."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from bench.real_music import classical as cl
from bench.real_music.cli import main
from bench.real_music.compare import compare, read_configs, render_markdown
from bench.real_music.dataset import (DATASET_INFO_NAME, MANIFEST_NAME, Soundtrack,
                                      allocate_excerpts, build_dataset, excerpt_starts,
                                      split_by_track, track_of)
from models.data import DataError, manifest

RATE = 8000
EXCERPT = 1.0


def _song(rng, seconds, pitch):
    """A few seconds of a decaying tone with noise: audible, never silent."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.4 * np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    return (tone * np.exp(-(t % 0.5) * 3) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _fake_tree(root: Path, seed: int, tracks_per_class=(6, 6, 7)) -> list[Soundtrack]:
    """Three installed 'packages' with music folders, and the oddities the builder must handle."""
    rng = np.random.default_rng(seed)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    status, soundtracks = [], []
    for index, count in enumerate(tracks_per_class):
        package, folder = f"game{index}-music", f"/usr/share/game{index}/music/"
        music = root / folder.lstrip("/")
        music.mkdir(parents=True)
        listed = [folder]
        for track in range(count):
            name = f"{folder}album/t{track}.wav" if track % 2 else f"{folder}t{track}.flac"
            (root / name.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(root / name.lstrip("/"),
                            _song(rng, rng.uniform(2.2, 5.5), 110 * (index + 1)), RATE)
            listed.append(name)
        doc = root / f"usr/share/doc/{package}/copyright"
        doc.parent.mkdir(parents=True)
        doc.write_text(f"Files: *\nLicense: CC-BY-SA-3.0\n")
        listed.append(f"/usr/share/doc/{package}/copyright")
        (info / f"{package}.list").write_text("/.\n/usr\n" + "\n".join(listed) + "\n")
        status.append(f"Package: {package}\nStatus: install ok installed\nVersion: 1.{index}-2\n"
                      f"Description: music\n more description\n")
        soundtracks.append(Soundtrack(package, f"class{index}", folder, "CC-BY-SA-3.0",
                                      "License: CC-BY-SA-3.0", exclude=r"_enhanced\."))
    # oddities, all in class0's folder: each must be skipped and counted (or ignored)
    music0 = root / "usr/share/game0/music"
    (music0 / "broken.ogg").write_bytes(b"OggS" + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    soundfile.write(music0 / "short.wav", _song(rng, 0.6, 330), RATE)
    soundfile.write(music0 / "silence.wav", np.zeros(3 * RATE, dtype=np.float32), RATE)
    (music0 / "copy.flac").write_bytes((music0 / "t0.flac").read_bytes())
    soundfile.write(music0 / "t0_enhanced.wav", _song(rng, 3.0, 220), RATE)
    (music0 / "link.flac").symlink_to(music0 / "t2.flac")
    # a track whose second half is silence: of its two excerpts (it has the most room, so it
    # gets a second one), the one centred at 4.5 s is silent and dropped
    gap = _song(rng, 6.0, 440)
    gap[3 * RATE:] = 0
    soundfile.write(root / "usr/share/game2/music/gap.wav", gap, RATE)
    with open(info / "game2-music.list", "a") as handle:
        handle.write("/usr/share/game2/music/gap.wav\n")
    odd = ["broken.ogg", "short.wav", "silence.wav", "copy.flac", "t0_enhanced.wav", "link.flac"]
    with open(info / "game0-music.list", "a") as handle:
        handle.writelines(f"/usr/share/game0/music/{name}\n" for name in odd)
    (root / "var/lib/dpkg/status").write_text("\n".join(status))
    return soundtracks


def _build(tmp_path, out="data", seed=0, **kwargs):
    return build_dataset(tmp_path / out, kwargs.pop("soundtracks"), root=tmp_path,
                         dpkg_dir=tmp_path / "var/lib/dpkg", excerpt_seconds=EXCERPT,
                         excerpts_per_class=10, seed=seed, **kwargs)


@pytest.fixture
def tree(tmp_path):
    seed = int(np.random.SeedSequence().entropy % 2 ** 32)
    print("seed", seed)
    return tmp_path, _fake_tree(tmp_path, seed)


def test_build_writes_a_manifest_the_project_reads_with_every_bad_file_counted(tree):
    root, soundtracks = tree
    info = _build(root, soundtracks=soundtracks)
    tracklist = manifest(root / "data" / MANIFEST_NAME)
    assert tracklist.classes == ["class0", "class1", "class2"]
    assert all(t.split in ("train", "valid", "test") for t in tracklist.tracks)
    skipped = {reason: entry["count"] for reason, entry in info["skipped"].items()}
    assert skipped == {"undecodable": 1, "too_short": 1, "silent": 1, "duplicate": 1,
                       "silent_excerpts": 1}
    sources = {Path(t["source"]).name for t in info["tracks"] if t["label"] == "class0"}
    assert not sources & {"link.flac", "t0_enhanced.wav"}
    assert len(sources & {"copy.flac", "t0.flac"}) == 1          # the first of the two in order
    assert info["totals"]["tracks"] == 6 + 6 + 7 + 1
    gap = next(t for t in info["tracks"] if t["source"].endswith("gap.wav"))
    assert [e["start_sample"] for e in gap["excerpts"]] == [RATE]
    assert [p["version"] for p in info["packages"]] == ["1.0-2", "1.1-2", "1.2-2"]
    assert all(p["licence"] == "CC-BY-SA-3.0" for p in info["packages"])
    assert json.loads((root / "data" / DATASET_INFO_NAME).read_text())["totals"] == info["totals"]


def test_excerpts_are_the_source_audio_at_their_recorded_start(tree):
    root, soundtracks = tree
    info = _build(root, soundtracks=soundtracks)
    for track in info["tracks"]:
        source, rate = soundfile.read(track["source"], dtype="float64")
        for excerpt in track["excerpts"]:
            written, written_rate = soundfile.read(root / "data" / excerpt["path"], dtype="float64")
            start = excerpt["start_sample"]
            assert excerpt["start_s"] == pytest.approx(start / rate, abs=1e-3)
            assert written_rate == rate and len(written) == int(EXCERPT * rate)
            # 16-bit FLAC of the decoded source: within one quantisation step
            np.testing.assert_allclose(written, source[start:start + len(written)], atol=1 / 32768)


def test_split_is_by_track_stratified_and_reproducible(tree):
    root, soundtracks = tree
    first = _build(root, soundtracks=soundtracks)
    again = _build(root, out="again", soundtracks=soundtracks)
    other = _build(root, out="other", seed=1, soundtracks=soundtracks)
    rows = list(csv.reader(open(root / "data" / MANIFEST_NAME)))
    assert rows == list(csv.reader(open(root / "again" / MANIFEST_NAME)))
    assert [t["split"] for t in first["tracks"]] != [t["split"] for t in other["tracks"]]
    split_of_track = {}
    for path, label, split in rows[1:]:
        assert split_of_track.setdefault(track_of(path), split) == split   # no leakage
    for label, counts in first["per_class"].items():
        tracks = sum(counts[f"{s}_tracks"] for s in ("train", "valid", "test"))
        held = max(1, round(0.2 * tracks))
        assert (counts["valid_tracks"], counts["test_tracks"]) == (held, held), label
    assert again["per_class"] == first["per_class"]


def test_a_class_with_too_few_usable_tracks_is_an_error_naming_it(tmp_path):
    soundtracks = _fake_tree(tmp_path, 7, tracks_per_class=(6, 2, 6))
    with pytest.raises(DataError, match="class1"):
        _build(tmp_path, soundtracks=soundtracks)


def test_build_command_line_reports_a_bad_dataset_in_one_line(tmp_path, capsys):
    _fake_tree(tmp_path, 3, tracks_per_class=(6, 6, 1))
    args = ["build", "--out", str(tmp_path / "out"), "--root", str(tmp_path),
            "--dpkg-dir", str(tmp_path / "var/lib/dpkg"), "--excerpt-seconds", "1"]
    # the real SOUNDTRACKS are not in the fake tree: the first package is named as missing
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "apt-get install drascula-music" in error


def test_missing_package_and_changed_licence_are_errors(tree):
    root, soundtracks = tree
    absent = Soundtrack("absent-music", "absent", "/usr/share/absent/", "GPL", "GPL")
    with pytest.raises(DataError, match="apt-get install absent-music"):
        _build(root, soundtracks=[*soundtracks, absent])
    (root / "usr/share/doc/game1-music/copyright").write_text("License: proprietary\n")
    with pytest.raises(DataError, match="game1-music/copyright"):
        _build(root, out="other", soundtracks=soundtracks)


def test_split_by_track_per_class_does_not_depend_on_the_other_classes():
    seed = int(np.random.SeedSequence().entropy % 1000)
    print("seed", seed)
    a = {"x": [f"x/{i}" for i in range(11)], "y": [f"y/{i}" for i in range(5)]}
    alone = split_by_track({"x": a["x"]}, seed)
    together = split_by_track(a, seed)
    assert {k: together[k] for k in alone} == alone
    assert sorted(together) == sorted(a["x"] + a["y"])
    sizes = [list(together.values()).count(s) for s in ("train", "valid", "test")]
    assert sizes == [7 + 3, 2 + 1, 2 + 1]


def test_excerpt_placement_and_allocation():
    rng = np.random.default_rng(int(np.random.SeedSequence().entropy % 2 ** 32))
    for _ in range(50):
        length, total = int(rng.integers(10, 100)), int(rng.integers(100, 5000))
        count = int(rng.integers(1, total // length + 1))
        starts = excerpt_starts(total, length, count)
        assert starts[0] >= 0 and starts[-1] + length <= total
        assert all(b - a >= length for a, b in zip(starts, starts[1:]))
    capacities = [int(c) for c in rng.integers(1, 6, size=8)]
    for target in range(0, sum(capacities) + 3):
        counts = allocate_excerpts(capacities, target)
        assert all(1 <= n <= c for n, c in zip(counts, capacities))
        assert sum(counts) == min(max(target, len(capacities)), sum(capacities))
        assert max(counts) - min(counts) <= max(1, max(capacities) - min(capacities))
    with pytest.raises(ValueError):
        excerpt_starts(100, 30, 4)


def test_track_of_strips_the_excerpt_number_only():
    assert track_of("audio/a/b-c__e03.flac") == "audio/a/b-c"
    assert track_of("audio/a/song.wav") == "audio/a/song"
    assert track_of("audio/a/x__ebb.flac") == "audio/a/x__ebb"


# --------------------------------------------------------------------------- classical features
def test_chroma_of_a_pure_tone_is_its_pitch_class():
    rng = np.random.default_rng(int(np.random.SeedSequence().entropy % 2 ** 32))
    t = np.arange(2 * cl.SAMPLE_RATE) / cl.SAMPLE_RATE
    # C3 .. B6 (131 Hz - 3.95 kHz): inside the chroma's 100 Hz - 4 kHz, and high enough that
    # the 3.9-Hz STFT bins resolve semitones (6.5 Hz apart at A2)
    for note in rng.integers(48, 96, size=8):
        frequency = 440.0 * 2 ** ((note - 69) / 12)    # equal temperament, A4 = MIDI 69
        tone = 0.5 * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 6.28))
        stats = cl.chroma_statistics(tone)
        assert stats.shape == (24,)
        # the first and last frames reach into the reflect padding, whose phase jump spreads
        # the spectrum; every frame inside the tone has its maximum at the tone's class
        inside = cl.chroma(tone)[:, 1:-1]
        assert (inside.argmax(axis=0) == note % 12).all(), (note, stats[:12])
        assert stats[note % 12] > 0.9 and np.delete(stats[:12], note % 12).max() < 0.3


def _htk_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)         # the HTK book's mel scale


def _mel_oracle(x, rate, n_fft, hop, bands):
    """float64 log-mel statistics: periodic Hann STFT with reflect padding of n_fft/2, power,
    triangular filters on HTK-mel-spaced corners (torchaudio.functional.melscale_fbanks'
    definition with norm=None), 10 log10(power + 1e-10), then mean/std/mean |diff| per band."""
    padded = np.pad(x, n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                     # (frames, bins)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    corners = 700.0 * (10 ** (np.linspace(_htk_mel(0.0), _htk_mel(rate / 2), bands + 2) / 2595) - 1)
    rising = (freqs[None] - corners[:-2, None]) / (corners[1:-1, None] - corners[:-2, None])
    falling = (corners[2:, None] - freqs[None]) / (corners[2:, None] - corners[1:-1, None])
    filters = np.maximum(0, np.minimum(rising, falling))                 # (bands, bins)
    db = 10 * np.log10(filters @ power.T + 1e-10)                        # (bands, frames)
    return np.concatenate([db.mean(1), db.std(1), np.abs(np.diff(db, axis=1)).mean(1)])


def test_log_mel_statistics_match_a_float64_oracle():
    seed = int(np.random.SeedSequence().entropy % 2 ** 32)
    print("seed", seed)
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.5 * cl.SAMPLE_RATE)) / cl.SAMPLE_RATE
    x = (0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
         * (t > rng.uniform(0.2, 1.0)))
    got = cl.log_mel_statistics(x.astype(np.float32))
    want = _mel_oracle(x.astype(np.float32).astype(np.float64), cl.SAMPLE_RATE, 1024, 512, 96)
    assert got.shape == (288,)
    # float32 STFT and filters against float64: dB values agree to ~1e-4 dB of a ~60 dB range
    np.testing.assert_allclose(got, want, atol=2e-3 * max(1.0, np.abs(want).max() / 100))


# --------------------------------------------------------------------------- logistic regression
def _blobs(rng, per_class, classes=3, dims=6, spread=0.3):
    centres = rng.standard_normal((classes, dims)) * 4
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + spread * rng.standard_normal((len(labels), dims)), labels


def test_logistic_regression_is_at_its_optimum_and_separates_separable_data():
    seed = int(np.random.SeedSequence().entropy % 2 ** 32)
    print("seed", seed)
    rng = np.random.default_rng(seed)
    x, y = _blobs(rng, 20)
    l2 = 0.1
    weights, biases = (t.numpy() for t in cl.fit_logistic(x, y, 3, l2))
    logits = x @ weights.T + biases
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y]
    grad_w = (p - onehot).T @ x / len(y) + l2 * weights    # gradient of mean CE + l2/2 |W|^2
    grad_b = (p - onehot).mean(0)
    scale = np.abs(onehot.T @ x / len(y)).max()             # the gradient's size at W = 0
    assert np.abs(grad_w).max() < 1e-5 * scale and np.abs(grad_b).max() < 1e-6
    splits = np.array((["train"] * 12 + ["valid"] * 4 + ["test"] * 4) * 3)
    result = cl.select_and_test(x, y, splits, 3)
    assert result["test_song_accuracy"] == 1.0 and result["valid_song_accuracy"] == 1.0


def test_selection_never_sees_the_test_songs():
    rng = np.random.default_rng(int(np.random.SeedSequence().entropy % 2 ** 32))
    x, y = _blobs(rng, 30, spread=3.0)                      # overlapping: the L2 weight matters
    splits = rng.permutation(np.array(["train"] * 50 + ["valid"] * 20 + ["test"] * 20))
    clean = cl.select_and_test(x, y, splits, 3)
    poisoned = x.copy()
    poisoned[splits == "test"] = np.nan
    dirty = cl.select_and_test(poisoned, y, splits, 3)
    assert dirty["l2"] == clean["l2"] and dirty["grid"] == clean["grid"]


def test_classical_reference_end_to_end_on_the_fake_tree(tree):
    root, soundtracks = tree
    _build(root, soundtracks=soundtracks)
    result = cl.classical_reference(root / "data" / MANIFEST_NAME, split_seeds=[0, 1])
    own, same = result["manifest_split"], result["resplits"][0]
    assert result["features"] == 312
    # the manifest was split with seed 0: re-splitting with seed 0 is the same experiment
    assert same["test_song_accuracy"] == own["test_song_accuracy"] and same["l2"] == own["l2"]
    assert own["tracks"]["test"] == 1 + 1 + 2
    # the classes are tones an octave or a fifth apart: far above chance (1/3), though with
    # ~18 training excerpts for 312 features an error or two among the ~6 test excerpts occurs
    # (twelve trees: 10 at 1.0, two at 0.8)
    assert own["test_song_accuracy"] >= 0.6 and own["train_song_accuracy"] == 1.0


# --------------------------------------------------------------------------- comparison runner
# A stand-in for `python -m models train`: it writes report.json with the keys models/cli.py
# command_train writes (best_epoch, splits, test.song_accuracy, test.clip_accuracy), or fails.
FAKE_TRAIN = """
import json, sys, pathlib
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
if value("--model") == "broken":
    sys.exit("error: this model does not train")
seed = int(value("--seed"))
out = pathlib.Path(value("--out")); out.mkdir(parents=True, exist_ok=True)
(out / "report.json").write_text(json.dumps({"best_epoch": 3, "splits": {},
    "test": {"song_accuracy": 0.5 + 0.1 * seed, "clip_accuracy": 0.4 + 0.05 * seed}}))
print("trained", args)
"""


def test_compare_runs_every_config_and_seed_and_summarises(tree, monkeypatch, capsys):
    root, soundtracks = tree
    _build(root, soundtracks=soundtracks)
    script = root / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    configs = {"good": {"model": "mssincresnet", "flags": ["--compact"]},
               "bad": {"model": "broken", "flags": []}}
    monkeypatch.chdir(root)     # relative paths, while the runs start in the repository root
    results = compare(Path("data") / MANIFEST_NAME, configs, [0, 1, 2], Path("runs"),
                      extra=["--epochs", "2"], train_command=[sys.executable, str(script)],
                      classical=False)
    good = [r for r in results["runs"] if r["config"] == "good"]
    assert [r["test_song_accuracy"] for r in good] == pytest.approx([0.5, 0.6, 0.7])
    assert "--epochs 2" in good[0]["command"] and "--seed 2" in good[2]["command"]
    assert Path(good[1]["report"]) == root / "runs" / "good" / "seed-1" / "report.json"
    assert "trained" in (root / "runs" / "good" / "seed-1.log").read_text()
    stats = results["summary"]["good"]["test_song_accuracy"]
    assert stats["mean"] == pytest.approx(0.6)
    assert stats["std"] == pytest.approx(np.std([.5, .6, .7], ddof=1))
    assert results["summary"]["bad"]["failed_runs"] == 3
    assert all("does not train" in r["error"] for r in results["runs"] if r["config"] == "bad")
    tracks = [t for split in results["split"].values() for t in split["tracks"]]
    assert len(tracks) == len(set(tracks)) == 20
    assert "| good | 3 | 0.600 ± 0.100 |" in render_markdown(results)
    saved = root / "results.json"
    saved.write_text(json.dumps(results))
    assert main(["table", str(saved)]) == 0
    assert "| bad | 0 | – | – |" in capsys.readouterr().out


def test_read_configs_extends_and_restricts(tmp_path):
    extra = tmp_path / "more.json"
    extra.write_text(json.dumps({"laptop": {"model": "mssincresnet",
                                            "flags": ["--size", "laptop"]}}))
    configs = read_configs(extra, ["laptop", "sincnet-compact"])
    assert list(configs) == ["laptop", "sincnet-compact"]
    with pytest.raises(ValueError, match="unknown configuration"):
        read_configs(None, ["nope"])
    extra.write_text(json.dumps({"x": {"flags": ["--compact"]}}))
    with pytest.raises(ValueError, match="'x'"):
        read_configs(extra, None)


COUNTING_TRAIN = FAKE_TRAIN.replace('print("trained", args)', '''print("trained", args)
import os
with open(pathlib.Path(value("--out")).parent.parent / "calls.txt", "a") as calls:
    calls.write(f"{value('--seed')} {os.environ.get('OMP_NUM_THREADS')}\\n")''')


def test_compare_runs_jobs_in_parallel_threads_and_resumes_finished_runs(tree, monkeypatch):
    """--jobs 2 gives each run cpu_count / 2 threads; a second call reads the finished runs
    (each kept in <out>.json) instead of repeating them, and re-runs a changed or failed one."""
    root, soundtracks = tree
    _build(root, soundtracks=soundtracks)
    script = root / "count_train.py"
    script.write_text(COUNTING_TRAIN)
    monkeypatch.chdir(root)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    configs = {"good": {"model": "mssincresnet", "flags": ["--compact"]}}
    run = lambda extra: compare(Path("data") / MANIFEST_NAME, configs, [0, 1, 2], Path("runs"),
                                extra=extra, train_command=[sys.executable, str(script)],
                                classical=False, jobs=2)
    first = run(["--epochs", "2"])
    calls = (root / "runs" / "calls.txt").read_text().split()
    assert sorted(calls[0::2]) == ["0", "1", "2"] and set(calls[1::2]) == {"2"}
    assert [r["seed"] for r in first["runs"]] == [0, 1, 2] and first["jobs"] == 2
    again = run(["--epochs", "2"])
    assert again["runs"] == first["runs"]                          # read back, not re-run
    assert len((root / "runs" / "calls.txt").read_text().split()) == 6
    (root / "runs" / "good" / "seed-1" / "report.json").unlink()   # a lost report: run again
    run(["--epochs", "2"])
    assert len((root / "runs" / "calls.txt").read_text().split()) == 8
    changed = run(["--epochs", "3"])                                # another command: run all
    assert len((root / "runs" / "calls.txt").read_text().split()) == 14
    assert all("--epochs 3" in r["command"] for r in changed["runs"])
    gathered = compare(Path("data") / MANIFEST_NAME, configs, [0, 1, 2, 3], Path("runs"),
                       extra=["--epochs", "3"], train_command=[sys.executable, str(script)],
                       classical=False, gather=True)                # reads, never runs
    assert len((root / "runs" / "calls.txt").read_text().split()) == 14
    assert gathered["runs"] == changed["runs"]
    assert [m["seed"] for m in gathered["missing"]] == [3]
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        compare(Path("data") / MANIFEST_NAME, configs, [0], Path("runs"), classical=False, jobs=0)


def test_resplit_writes_the_same_excerpts_dealt_by_track_as_the_classical_re_split(tree, capsys):
    root, soundtracks = tree
    _build(root, soundtracks=soundtracks)
    original = root / "data" / MANIFEST_NAME
    assert main(["resplit", str(original), "--seed", "1"]) == 0
    resplit = root / "data" / "realmusic-split1.csv"
    assert f"wrote {resplit}" in capsys.readouterr().out
    rows, new_rows = (list(csv.reader(open(path)))[1:] for path in (original, resplit))
    assert [row[:2] for row in new_rows] == [row[:2] for row in rows]     # same excerpts, labels
    split_of_track = {}
    for path, _, split in new_rows:
        assert split_of_track.setdefault(track_of(path), split) == split   # no leakage
    assert [row[2] for row in new_rows] != [row[2] for row in rows]
    # the build split with seed 0: re-splitting with seed 0 deals the tracks out the same way
    assert main(["resplit", str(original), "--seed", "0"]) == 0
    assert list(csv.reader(open(root / "data" / "realmusic-split0.csv")))[1:] == rows
    # the networks train on what the classical reference calls re-split 1
    own = cl.classical_reference(resplit)["manifest_split"]
    again = cl.classical_reference(original, split_seeds=[1])["resplits"][0]
    assert (own["test_song_accuracy"], own["l2"], own["tracks"]) == \
        (again["test_song_accuracy"], again["l2"], again["tracks"])
    assert manifest(resplit).tracks[0].split in ("train", "valid", "test")
