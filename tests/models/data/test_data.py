"""Audio decoding, dataset discovery, splits, the decode cache and clip sampling."""
import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from models.data.audio import AudioError, clip_starts, cut_clips, load_audio
from models.data.cache import load_corpus
from models.data.clips import RandomClipDataset
from models.data.readers.folder import folder_per_class
from models.data.readers.gtzan import gtzan
from models.data.readers.ismir2004 import ismir2004
from models.data.readers.manifest import manifest
from models.data.readers.synthetic import synthetic_tracklist
from models.data.splits import make_splits, stratified_folds
from models.data.tracklists import open_tracklist
from models.data.tracks import DataError


def tone(seconds, rate, channels=1, freq=440.0, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return np.stack([wave * (1 + 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt, rate, channels", [("wav", 44100, 2), ("flac", 8000, 1),
                                                 ("ogg", 22050, 2), ("mp3", 44100, 2), ("au", 22050, 1)])
def test_load_audio_formats_mix_and_resample(tmp_path, fmt, rate, channels):
    path = tmp_path / f"x.{fmt}"
    data = tone(1.5, rate, channels)
    sf.write(path, data, rate)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 1.5 * 16000) < 0.05 * 16000       # mp3 adds a little padding
    # the 440 Hz tone survives mixing and resampling: its spectral peak is where it should be
    spectrum = np.abs(np.fft.rfft(audio[2000:18000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 5


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"),
                                              (b"this is not audio at all" * 10,
                                               "not a recognised audio file")])
def test_unusable_files_raise_naming_the_file(tmp_path, content, message):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert "broken.wav" in str(info.value)


def test_truncated_nan_and_silent_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(1.0, 16000), 16000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioError, match="truncated.wav"):
        load_audio(truncated)
    nan = tmp_path / "nan.wav"
    data = tone(1.0, 16000)
    data[100] = np.nan
    sf.write(nan, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(nan)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros((16000, 1), np.float32), 16000)
    with pytest.raises(AudioError, match="silent"):
        load_audio(silent)


def test_clips_hop_without_wraparound_and_pad_short_tracks():
    assert clip_starts(48000, 48000, 8000) == [0]
    assert clip_starts(30 * 16000, 48000, 8000) == list(range(0, 27 * 16000 + 1, 8000))
    assert len(clip_starts(30 * 16000, 48000, 8000)) == 55
    short = cut_clips(np.ones(1000, np.float32), 48000, 8000)
    assert short.shape == (1, 1, 48000) and short[0, 0, :1000].eq(1).all() and short[0, 0, 1000:].eq(0).all()
    track = np.arange(50000, dtype=np.float32)
    clips = cut_clips(track, 48000, 1000)
    assert clips.shape == (3, 1, 48000) and clips[2, 0, 0] == 2000 and clips[2, 0, -1] == 49999


def fake_gtzan(root, per_genre=3, ext="wav"):
    from models.data.readers.gtzan import GTZAN_GENRES
    for g_index, genre in enumerate(GTZAN_GENRES):
        folder = root / "genres" / genre
        folder.mkdir(parents=True)
        for i in range(per_genre):
            sf.write(folder / f"{genre}.{i:05d}.{ext}", tone(0.5, 22050, freq=200 + 50 * g_index, seed=i),
                     22050, format="AU" if ext == "au" else None)
    return root


def test_gtzan_tree_labels_and_a_readable_jazz_00054(tmp_path):
    fake_gtzan(tmp_path, per_genre=2, ext="au")
    sf.write(tmp_path / "genres" / "jazz" / "jazz.00054.au", tone(0.5, 22050), 22050, format="AU")
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # a readable jazz.00054 is an ordinary track
        tracks = gtzan(tmp_path)
    assert len(tracks.tracks) == 21
    assert [t.name for t in tracks.tracks if t.label == 5] == ["jazz.00000", "jazz.00001",
                                                               "jazz.00054"]
    assert tracks.classes[5] == "jazz"
    assert open_tracklist(str(tmp_path)).name == "gtzan"


def test_gtzan_filtered_split_sizes():
    from models.data.readers.gtzan import gtzan_filtered_splits, GTZAN_GENRES
    from models.data.tracks import Track, TrackList
    mapping = gtzan_filtered_splits()
    tracks = TrackList("gtzan", [Track(None, GTZAN_GENRES.index(n.split(".")[0]), n)
                                 for n in sorted(mapping)], list(GTZAN_GENRES))
    splits = make_splits(tracks, "filtered")
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [443, 197, 290]


def test_ismir2004_tree(tmp_path):
    classes = ["classical", "electronic", "jazz_blues", "metal_punk", "rock_pop", "world"]
    for subset in ("training", "development", "evaluation"):
        (tmp_path / "metadata" / subset).mkdir(parents=True)
        rows = ["class,artist,album,track,track number,file path"]
        for i, label in enumerate(classes):
            rel = f"{label}/artist/album/{i}.mp3"
            (tmp_path / "audio" / subset / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "audio" / subset / rel, tone(0.5, 44100, 2), 44100)
            extra = ",1234" if subset == "evaluation" else ""
            rows.append(f'{label.replace("_", "-")},"A","B","T",{i},{rel}{extra}')
        (tmp_path / "metadata" / subset / "tracklist.csv").write_text("\n".join(rows) + "\n")
    tracks = open_tracklist(str(tmp_path))
    assert tracks.name == "ismir2004" and tracks.classes == classes
    splits = make_splits(tracks)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [6, 6, 6]
    assert sorted(tracks.labels[splits["test"]].tolist()) == list(range(6))


def test_folder_and_manifest(tmp_path):
    for label in ("calm", "loud"):
        (tmp_path / "music" / label).mkdir(parents=True)
        for i in range(2):
            sf.write(tmp_path / "music" / label / f"{i}.flac", tone(0.5, 16000, seed=i), 16000)
    (tmp_path / "music" / "empty").mkdir()
    with pytest.warns(UserWarning, match="empty"):
        tracks = folder_per_class(tmp_path / "music")
    assert tracks.classes == ["calm", "loud"] and len(tracks.tracks) == 4
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,label,split\nmusic/calm/0.flac,calm,train\nmusic/loud/1.flac,loud,test\n")
    listed = manifest(csv_path)
    assert listed.classes == ["calm", "loud"] and [t.split for t in listed.tracks] == ["train", "test"]
    with pytest.raises(DataError, match="unknown label 'loud'"):
        manifest(csv_path, classes=["calm"])
    with pytest.raises(DataError, match="at least two class folders"):
        folder_per_class(tmp_path / "music" / "empty")


def test_stratified_folds_are_disjoint_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    folds = stratified_folds(labels, 10, seed=3)
    for f in range(10):
        assert np.bincount(labels[folds == f], minlength=10).tolist() == [10] * 10
    uneven = np.array([0] * 23 + [1] * 7 + [2] * 41)
    folds = stratified_folds(uneven, 10, seed=1)
    sizes = np.bincount(folds, minlength=10)
    assert sizes.max() - sizes.min() <= 1
    for label in range(3):
        per_fold = np.bincount(folds[uneven == label], minlength=10)
        assert per_fold.max() - per_fold.min() <= 1
    tracks = synthetic_tracklist(songs_per_genre=10)
    seen = []
    for fold in range(10):
        s = make_splits(tracks, "cv", fold=fold)
        assert not set(s["train"]) & set(s["test"]) and not set(s["valid"]) & set(s["test"])
        assert len(s["train"]) + len(s["valid"]) + len(s["test"]) == 60
        seen.extend(s["test"])
    assert sorted(seen) == list(range(60))


def test_corpus_cache_skips_corrupt_files_and_is_reused(tmp_path):
    fake_gtzan(tmp_path / "data", per_genre=1)
    (tmp_path / "data" / "genres" / "rock" / "rock.00009.wav").write_bytes(b"RIFF garbage")
    tracks = gtzan(tmp_path / "data")
    with pytest.warns(UserWarning, match="rock.00009.wav"):
        corpus = load_corpus(tracks, 16000, cache_dir=tmp_path / "cache", progress=False)
    assert len(corpus) == 10 and len(corpus.failures) == 1 and "rock.00009.wav" in corpus.failures[0]
    assert corpus.track(0).shape == (8000,)
    assert isinstance(corpus.audio, np.memmap)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and not any("tmp" in f for f in files)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # second load: from the cache, nothing decoded again
        again = load_corpus(tracks, 16000, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(again.track(3), corpus.track(3)) and again.failures == corpus.failures
    index = next((tmp_path / "cache").glob("*.json"))
    index.write_text("{broken")              # a damaged index is rebuilt, never trusted
    rebuilt = load_corpus(tracks, 16000, cache_dir=tmp_path / "cache", progress=False)
    assert np.array_equal(rebuilt.track(3), corpus.track(3))
    json.loads(index.read_text())


def test_random_clips_are_reproducible_per_epoch(tmp_path):
    corpus = load_corpus(synthetic_tracklist(songs_per_genre=2, seconds=2.0), 16000,
                         cache_dir=tmp_path, progress=False)
    dataset = RandomClipDataset(corpus, np.arange(len(corpus)), 8000, 4000, clips_per_song=3, seed=5)
    assert len(dataset) == 3 * len(corpus)
    first = [dataset[i] for i in range(len(dataset))]
    assert all(clip.shape == (1, 8000) and clip.dtype == torch.float32 for clip, _ in first)
    assert [label for _, label in first] == np.repeat(corpus.labels, 3).tolist()
    again = [dataset[i] for i in range(len(dataset))]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    dataset.set_epoch(1)
    assert not all(torch.equal(a[0], dataset[i][0]) for i, a in enumerate(first))
