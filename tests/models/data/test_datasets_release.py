"""ISMIR 2004 and GTZAN as they are actually distributed, and the decode cache's storage.

The ISMIR 2004 mock trees copy the release (MTG-UPF, Zenodo record 1302992): rows verbatim from
its ``metadata/{training,development,evaluation}/tracklist.csv`` and the matching on-disk names
from its ``filenames.txt``, both as committed in joshprewer/MusicGenreClassification @
69baa0fd2490771b29208804ebf3ca55ec6bb098 : MIR/ismir04_genre/ (no header row, every field quoted,
6 columns, 7 in evaluation; paths relative to ``audio/<subset>/``; original-genre folders). Only
the audio is synthetic (tiny MP3 files). The GTZAN tree uses the fault-filtered split's track
names as torchaudio embeds them (pytorch/audio, torchaudio/datasets/gtzan.py).
"""
import csv
import io
import json
import warnings

import numpy as np
import pytest
import soundfile as sf

from models.data.audio import fft_resample, load_audio
from models.data.cache import load_corpus
from models.data.readers.gtzan import GTZAN_GENRES, gtzan, gtzan_filtered_splits
from models.data.readers.ismir2004 import ISMIR2004_CLASSES, ismir2004
from models.data.splits import make_splits
from models.data.tracklists import open_tracklist
from models.data.tracks import DataError, TrackList

# (tracklist row as in the release, the file's path under audio/<subset>/ as in filenames.txt)
TRAINING = [
    ('"classical","american_baroque","dances_and_suites_of_rameau_an","air_suite_from_les_fetes_d_he","16","classical/american_baroque/dances_and_suites_of_rameau_an/16-air_suite_from_les_fetes_d_he.mp3"',
     "classical/american_baroque/dances_and_suites_of_rameau_an/16-air_suite_from_les_fetes_d_he.mp3"),
    ('"classical","american_baroque","dances_and_suites_of_rameau_an","l_oracle_suite_in_d_from_les","26","classical/american_baroque/dances_and_suites_of_rameau_an/26-l\'oracle_suite_in_d_from_les.mp3"',
     "classical/american_baroque/dances_and_suites_of_rameau_an/26-l'oracle_suite_in_d_from_les.mp3"),
    ('"classical","paul_beier","michelagnolo_galilei_sonate_from_il_primo_libro_d_intavolatura_di_liuto_1620","passemezzo_and_saltarello","4","classical/paul_beier/michelagnolo_galilei_sonate_from_il_primo_libro_d\'intavolatura_di_liuto_(1620)/4-passemezzo_and_saltarello.mp3"',
     "classical/paul_beier/michelagnolo_galilei_sonate_from_il_primo_libro_d_intavolatura_di_liuto_(1620)/4-passemezzo_and_saltarello.mp3"),
    ('"classical","paul_beier","michelagnolo_galilei_sonate_from_il_primo_libro_d_intavolatura_di_liuto_1620","sonate_in_c_minor_toccata_corrente_corrente_corrente","6","classical/paul_beier/michelagnolo_galilei_sonate_from_il_primo_libro_d\'intavolatura_di_liuto_(1620)/6-sonate_in_c_minor_toccata_corrente_corrente_corrente.mp3"',
     "classical/paul_beier/michelagnolo_galilei_sonate_from_il_primo_libro_d_intavolatura_di_liuto_(1620)/6-sonate_in_c_minor_toccata_corrente_corrente_corrente.mp3"),
    ('"electronic","aerobic_jonquil","brain_stomach","click_full_pussy","6","electronic/aerobic_jonquil/brain_stomach/6-click_full_pussy.mp3"',
     "electronic/aerobic_jonquil/brain_stomach/6-click_full_pussy.mp3"),
    ('"jazz_blues","chris_juergensen","prospects","prospects","1","jazz/chris_juergensen/prospects/1-prospects.mp3"',
     "jazz/chris_juergensen/prospects/1-prospects.mp3"),
    ('"metal_punk","atomic_opera","alpha_oranges","let_go","10","metal/atomic_opera/alpha_&_oranges/10-let_go.mp3"',
     "metal/atomic_opera/alpha_&_oranges/10-let_go.mp3"),
    ('"metal_punk","electric_frankenstein","conquers_the_world","face_at_the_edge_of_the_crowd","7","punk/electric_frankenstein/conquers_the_world!/7-face_at_the_edge_of_the_crowd.mp3"',
     "punk/electric_frankenstein/conquers_the_world!/7-face_at_the_edge_of_the_crowd.mp3"),
    ('"rock_pop","kokoon","erase","dawn","7","pop/the_kokoon/erase/7-dawn.mp3"',
     "pop/the_kokoon/erase/7-dawn.mp3"),
    ('"rock_pop","artemis","undone","don_t_look_back","7","rock/artemis/undone/7-don\'t_look_back.mp3"',
     "rock/artemis/undone/7-don't_look_back.mp3"),
    ('"world","anup","embrace","life_glides","6","world/anup/embrace/6-life_glides.mp3"',
     "world/anup/embrace/6-life_glides.mp3"),
]
DEVELOPMENT = [
    ('"classical","artist_1","album_1","track_1","1","artist_1_album_1_track_1.mp3"',
     "artist_1_album_1_track_1.mp3"),
    ('"electronic","artist_41","album_1","track_1","1","artist_41_album_1_track_1.mp3"',
     "artist_41_album_1_track_1.mp3"),
    ('"jazz_blues","artist_71","album_1","track_1","1","artist_71_album_1_track_1.mp3"',
     "artist_71_album_1_track_1.mp3"),
    ('"metal_punk","artist_76","album_1","track_1","1","artist_76_album_1_track_1.mp3"',
     "artist_76_album_1_track_1.mp3"),
    ('"rock_pop","artist_84","album_1","track_1","1","artist_84_album_1_track_1.mp3"',
     "artist_84_album_1_track_1.mp3"),
    ('"world","artist_110","album_1","track_1","1","artist_110_album_1_track_1.mp3"',
     "artist_110_album_1_track_1.mp3"),
]
EVALUATION = [
    ('"classical","american_baroque","dances_and_suites_of_rameau_an","air_gai_suite_from_les_fetes","2","classical/american_baroque/dances_and_suites_of_rameau_an/2-air_gai_suite_from_les_fetes.mp3","57578"',
     "classical/american_baroque/dances_and_suites_of_rameau_an/2-air_gai_suite_from_les_fetes.mp3"),
    ('"electronic","strojovna_07","dirnix","kruhov_objazd","5","electronic/strojovna_07/dirnix/5-kruhov\ufffd_objazd.mp3","56714"',
     "electronic/strojovna_07/dirnix/05-kruhovy_objazd.mp3"),
    ('"jazz_blues","chris_juergensen","prospects","extraordinaire","3","jazz/chris_juergensen/prospects/3-extraordinaire.mp3","58578"',
     "jazz/chris_juergensen/prospects/3-extraordinaire.mp3"),
    ('"metal_punk","atomic_opera","alpha_oranges","feverdream_1","4","metal/atomic_opera/alpha_&_oranges/4-feverdream_#1.mp3","57029"',
     "metal/atomic_opera/alpha_&_oranges/4-feverdream_#1.mp3"),
    ('"metal_punk","electric_frankenstein","conquers_the_world","deal_with_it","5","punk/electric_frankenstein/conquers_the_world!/5-deal_with_it.mp3","56289"',
     "punk/electric_frankenstein/conquers_the_world!/5-deal_with_it.mp3"),
    ('"rock_pop","kokoon","erase","erase","3","pop/the_kokoon/erase/3-erase.mp3","59219"',
     "pop/the_kokoon/erase/3-erase.mp3"),
    ('"rock_pop","artemis","undone","changing_sky","2","rock/artemis/undone/2-changing_sky.mp3","56105"',
     "rock/artemis/undone/2-changing_sky.mp3"),
    ('"world","anup","embrace","genesis_wave","2","world/anup/embrace/2-genesis_wave.mp3","58667"',
     "world/anup/embrace/2-genesis_wave.mp3"),
]
SUBSETS = {"training": TRAINING, "development": DEVELOPMENT, "evaluation": EVALUATION}


def tone(seconds, rate, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t)
            + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_tracklist(root, subset, rows):
    folder = root / "metadata" / subset
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracklist.csv").write_bytes("".join(r + "\n" for r in rows).encode("utf-8"))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The mock release: tracklists as shipped, an MP3 at every on-disk name."""
    root = tmp_path_factory.mktemp("ismir04_genre")
    seed = 0
    for subset, rows in SUBSETS.items():
        write_tracklist(root, subset, [row for row, _ in rows])
        for _, on_disk in rows:
            path = root / "audio" / subset / on_disk
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(0.3, 22050, seed), 22050, format="MP3")
            seed += 1
    return root


def csv_fields(row):
    return next(csv.reader(io.StringIO(row)))


def test_the_release_loads_with_its_file_names_and_classes(release):
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # every row finds its file, nothing to warn about
        tracks = open_tracklist(str(release))
    assert tracks.name == "ismir2004" and tracks.classes == list(ISMIR2004_CLASSES)
    splits = {"training": "train", "development": "valid", "evaluation": "test"}
    assert len(tracks.tracks) == sum(len(rows) for rows in SUBSETS.values())
    got = {(t.split, t.path.relative_to(release).as_posix()): tracks.classes[t.label]
           for t in tracks.tracks}
    want = {(splits[subset], f"audio/{subset}/{on_disk}"): csv_fields(row)[0]
            for subset, rows in SUBSETS.items() for row, on_disk in rows}
    assert got == want
    split_sizes = {name: len(idx) for name, idx in make_splits(tracks).items()}
    assert split_sizes == {"train": 11, "valid": 6, "test": 8}


def test_class_column_holding_original_genres(release, tmp_path):
    """Folder genres (jazz, metal, punk, pop, rock, ...) in the class column map to the six."""
    write_tracklist(tmp_path, "training",
                    [row.replace(f'"{csv_fields(row)[0]}"', f'"{on_disk.split("/")[0]}"', 1)
                     for row, on_disk in TRAINING])
    (tmp_path / "audio").symlink_to(release / "audio")
    tracks = ismir2004(tmp_path, {"training": "train"})
    assert [tracks.classes[t.label] for t in tracks.tracks] == [csv_fields(r)[0] for r, _ in TRAINING]
    assert {csv_fields(r.replace(csv_fields(r)[0], d.split("/")[0], 1))[0]
            for r, d in TRAINING} >= {"jazz", "metal", "punk", "pop", "rock"}


GROUND_TRUTHS = {   # the release's ground_truth.csv layout is unknown: several plausible ones
    "file,class": "file,class\n" + "".join(f"{d},{csv_fields(r)[0]}\n" for r, d in DEVELOPMENT),
    "tab, stems": "".join(f"{d[:-4]}\t{csv_fields(r)[0]}\n" for r, d in DEVELOPMENT),
    "class;path": "".join(f'"{csv_fields(r)[0]}";"development/{d}"\n' for r, d in DEVELOPMENT),
}


@pytest.mark.parametrize("layout", sorted(GROUND_TRUTHS))
def test_development_labels_come_from_ground_truth(release, tmp_path, layout):
    (tmp_path / "audio").symlink_to(release / "audio")
    anonymous = [",".join(['""'] + row.split(",")[1:]) for row, _ in DEVELOPMENT]
    write_tracklist(tmp_path, "development", anonymous)
    only_dev = {"development": "valid"}
    with pytest.raises(DataError, match="ground_truth.csv"):
        ismir2004(tmp_path, only_dev)
    truth = tmp_path / "metadata" / "development" / "ground_truth.csv"
    truth.write_text(GROUND_TRUTHS[layout])
    tracks = ismir2004(tmp_path, only_dev)
    assert [tracks.classes[t.label] for t in tracks.tracks] == \
        [csv_fields(r)[0] for r, _ in DEVELOPMENT]


def test_ground_truth_wins_over_the_tracklist_and_says_so(release, tmp_path):
    (tmp_path / "audio").symlink_to(release / "audio")
    write_tracklist(tmp_path, "development", [row for row, _ in DEVELOPMENT])
    first = DEVELOPMENT[0][1]
    (tmp_path / "metadata" / "development" / "ground_truth.csv").write_text(f"{first},world\n")
    with pytest.warns(UserWarning, match="differs from the track list's for 1 tracks"):
        tracks = ismir2004(tmp_path, {"development": "valid"})
    assert tracks.classes[tracks.tracks[0].label] == "world"
    assert [tracks.classes[t.label] for t in tracks.tracks[1:]] == \
        [csv_fields(r)[0] for r, _ in DEVELOPMENT[1:]]
    (tmp_path / "metadata" / "development" / "ground_truth.csv").write_text("a header only\n")
    with pytest.raises(DataError, match="no row names both an audio file and a class"):
        ismir2004(tmp_path, {"development": "valid"})


def test_absolute_paths_and_missing_files(release, tmp_path):
    rows = [csv_fields(r) for r, _ in EVALUATION[:3]]
    rows[0][5] = str(release / "audio" / "evaluation" / EVALUATION[0][1])        # exists here
    rows[1][5] = "/media/other/ismir04_genre/audio/evaluation/" + rows[1][5]      # other machine
    rows[2][5] = rows[2][5].replace("extraordinaire", "not_in_the_release")
    write_tracklist(tmp_path, "evaluation", [",".join(f'"{c}"' for c in r) for r in rows])
    (tmp_path / "audio").symlink_to(release / "audio")
    with pytest.warns(UserWarning, match="not_in_the_release.mp3' not found; skipped"):
        tracks = ismir2004(tmp_path, {"evaluation": "test"})
    assert [t.path.name for t in tracks.tracks] == ["2-air_gai_suite_from_les_fetes.mp3",
                                                    "05-kruhovy_objazd.mp3"]


@pytest.mark.parametrize("row, message", [
    ('"classical","a","b","c","1"', "expected 6 columns"),
    ('"polka","a","b","c","1","x.mp3"', "unknown class 'polka'"),
])
def test_bad_tracklist_rows_are_clear_errors(tmp_path, row, message):
    write_tracklist(tmp_path, "training", [row])
    with pytest.raises(DataError, match=message) as info:
        ismir2004(tmp_path)
    assert "tracklist.csv:1" in str(info.value)


# --------------------------------------------------------------------------------------- GTZAN
@pytest.fixture(scope="module")
def filtered_gtzan(tmp_path_factory):
    """A GTZAN tree with every track of the fault-filtered split (tiny 16-kHz files)."""
    root = tmp_path_factory.mktemp("gtzan")
    for i, name in enumerate(sorted(gtzan_filtered_splits())):
        genre = name.split(".")[0]
        (root / "genres" / genre).mkdir(parents=True, exist_ok=True)
        sf.write(root / "genres" / genre / f"{name}.wav", tone(0.05, 16000, i % 50), 16000,
                 subtype="PCM_16")
    return root


def filtered_sizes(root, cache):
    tracks = gtzan(root)
    corpus = load_corpus(tracks, 16000, cache, progress=False)
    splits = make_splits(tracks.restricted_to(corpus.names), "filtered")
    return corpus, [len(splits[s]) for s in ("train", "valid", "test")]


def test_a_readable_jazz_00054_is_used(filtered_gtzan, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corpus, sizes = filtered_sizes(filtered_gtzan, tmp_path)
    assert "jazz.00054" in corpus.names and corpus.failures == []
    assert sizes == [443, 197, 290]


def test_an_unreadable_jazz_00054_is_skipped_and_reported(filtered_gtzan, tmp_path):
    path = filtered_gtzan / "genres" / "jazz" / "jazz.00054.wav"
    good = path.read_bytes()
    path.write_bytes(b"\0" * 64 + good[64:])      # as the Kaggle copy: no RIFF header
    try:
        with pytest.warns(UserWarning, match="jazz.00054"):
            corpus, sizes = filtered_sizes(filtered_gtzan, tmp_path)
    finally:
        path.write_bytes(good)
    assert "jazz.00054" not in corpus.names and len(corpus.failures) == 1
    assert "jazz.00054" in corpus.failures[0] and "442" in corpus.failures[0]
    assert sizes == [442, 197, 290]


# -------------------------------------------------------------------------------- decode cache
def test_recordings_are_cached_as_int16_within_half_a_step(release, tmp_path):
    tracks = ismir2004(release, {"training": "train"})
    corpus = load_corpus(tracks, 16000, tmp_path, progress=False)
    exact = load_corpus(tracks, 16000, tmp_path, progress=False, storage="float32")
    assert corpus.audio.dtype == np.int16 and exact.audio.dtype == np.float32
    (i16,) = tmp_path.glob("*.i16")
    assert i16.stat().st_size == 2 * int(corpus.lengths.sum())
    assert json.loads(i16.with_suffix(".json").read_text())["storage"] == "int16"
    for index, track in enumerate(tracks.tracks):
        decoded = load_audio(track.path, 16000)
        np.testing.assert_array_equal(exact.track(index), decoded)
        peak = np.abs(decoded).max()            # half a 16-bit step, plus float32 rounding
        bound = 0.5 * peak / 32767 + 2 * np.finfo(np.float32).eps * peak
        assert np.abs(corpus.track(index) - decoded).max() <= bound
    assert not list(tmp_path.glob("*tmp*"))


def test_fixed_length_decoding_stretches_every_file(release, tmp_path):
    tracks = ismir2004(release, {"evaluation": "test"})
    with pytest.warns(UserWarning, match="8 of 8 tracks differ from the fixed duration of 30 s"):
        corpus = load_corpus(tracks, 16000, tmp_path, progress=False, fixed_samples=480000)
    assert corpus.audio.dtype == np.float32 and set(corpus.lengths.tolist()) == {480000}
    samples, _ = sf.read(tracks.tracks[1].path, dtype="float32", always_2d=True)
    np.testing.assert_allclose(corpus.track(1), fft_resample(samples.mean(1), 480000), atol=1e-6)


def test_bad_storage_is_refused(release, tmp_path):
    with pytest.raises(DataError, match="storage must be one of"):
        load_corpus(TrackList("x", [], ["a"]), 16000, tmp_path, progress=False, storage="f16")


# ------------------------------------------------------------------ fixed-length FFT resampling
def periodic(cycles, phases, amplitudes, length):
    """Samples 0..length-1 of one period of a sum of cosines with whole numbers of cycles."""
    t = np.arange(length) / length
    return sum(a * np.cos(2 * np.pi * c * t + p) for c, p, a in zip(cycles, phases, amplitudes))


@pytest.mark.parametrize("n, num", [(1000, 730), (730, 1000), (999, 480), (480, 999),
                                    (661794, 480000)])
def test_fft_resample_is_exact_for_periodic_band_limited_signals(n, num):
    """Such a signal is its own band-limited interpolant: resampled, it is the same cosines
    sampled at the new points (the definition scipy.signal.resample implements)."""
    rng = np.random.default_rng(n)
    top = min(n, num) // 2 - 1
    cycles = rng.choice(np.arange(1, top), 6, replace=False)
    phases, amplitudes = rng.uniform(0, 2 * np.pi, 6), rng.uniform(0.05, 0.15, 6)
    got = fft_resample(periodic(cycles, phases, amplitudes, n), num)
    want = periodic(cycles, phases, amplitudes, num)
    assert got.dtype == np.float32 and got.shape == (num,)
    assert np.abs(got - want).max() < 1e-6


def test_fft_resample_nyquist_bins():
    # shrinking to an even length: a tone at its Nyquist frequency keeps cos(phase) (-1)^m
    n, num, phase = 1000, 600, 0.7
    got = fft_resample(periodic([num // 2], [phase], [1.0], n), num)
    np.testing.assert_allclose(got, np.cos(phase) * (-1.0) ** np.arange(num), atol=1e-6)
    # growing from an even length: (-1)^k is read as the cosine at that Nyquist frequency
    n, num = 600, 1000
    got = fft_resample((-1.0) ** np.arange(n), num)
    np.testing.assert_allclose(got, periodic([n // 2], [0.0], [1.0], num), atol=1e-6)
    same = np.random.default_rng(0).standard_normal(77).astype(np.float32)
    np.testing.assert_array_equal(fft_resample(same, 77), same)
