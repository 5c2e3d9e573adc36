"""Fuzzing the dataset readers: CSV manifests, the ISMIR 2004 release's track lists and ground
truth, and dataset scanning with hostile audio among good songs.

The base files are real: a manifest as ``models.data.manifest`` documents it, and the ISMIR 2004
release's rows verbatim (taken from tests/models/test_datasets_release.py, which copies them
from the release as committed in joshprewer/MusicGenreClassification). Hypothesis damages them
(any bytes, NUL bytes, a 1 MB field, unbalanced quotes, other encodings); the readers must return
a track list or raise a one-line :class:`DataError` naming the file, and warnings about skipped
rows must be one line too.
"""
from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, strategies as st

from models.data import DataError, TrackList, ismir2004, load_corpus, open_tracklist
from tests.fuzz.support import assert_one_line_naming, fuzz_settings, hang_guard, mutated
from tests.models.test_datasets_release import SUBSETS

pytestmark = pytest.mark.fuzz

_SCRATCH = tempfile.TemporaryDirectory(prefix="sincfb-fuzz-data-")
SCRATCH = Path(_SCRATCH.name)
# The longest message a reader may give: it names the file and quotes a short excerpt
MESSAGE_LIMIT = 1000


def tone(seed: int, rate: int = 8000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(rate // 4) / rate
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def music_folder() -> Path:
    """``music/<calm|loud>/<i>.wav``: six real, decodable songs."""
    root = SCRATCH / "music"
    for label in ("calm", "loud"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            sf.write(root / label / f"{i}.wav", tone(10 * len(label) + i), 8000)
    return root


def manifest_text() -> str:
    """A manifest of the six songs with a header and a split column."""
    rows = ["path,label,split"]
    for label in ("calm", "loud"):
        rows += [f"music/{label}/{i}.wav,{label},{('train', 'valid', 'test')[i]}" for i in range(3)]
    return "\n".join(rows) + "\n"


@st.composite
def hostile_text(draw, original: str) -> bytes:
    """``original`` damaged: random byte mutations, a NUL byte, a 1 MB field, an unbalanced
    quote, a control character, or the whole text in another encoding."""
    kind = draw(st.sampled_from(("bytes", "nul", "huge", "quote", "control", "encoding")))
    data = original.encode("utf-8")
    offset = draw(st.integers(0, len(data)))
    if kind == "bytes":
        return draw(mutated(data, header=len(data)))
    if kind == "nul":
        return data[:offset] + b"\0" + data[offset:]
    if kind == "huge":
        return data[:offset] + draw(st.sampled_from((b"x", b"\xff", b'"'))) * (1 << 20) \
            + data[offset:]
    if kind == "quote":
        return data[:offset] + b'"' + data[offset:]
    if kind == "control":
        return data[:offset] + draw(st.sampled_from((b"\r", b"\n", b"\x1b[2J", b"\x85", b"\t"))) \
            + data[offset:]
    encoding = draw(st.sampled_from(("utf-16", "utf-32", "latin-1", "cp1252", "utf-8-sig")))
    text = original.replace("calm", draw(st.sampled_from(("calmé", "cälm", "calm\u2028"))))
    return text.encode(encoding, errors="replace")


def check_warnings(caught) -> None:
    for warning in caught:
        message = str(warning.message)
        assert "\n" not in message and len(message) < MESSAGE_LIMIT, repr(message[:300])


def check_data_error(error: DataError, path: Path) -> None:
    assert_one_line_naming(error, path)
    assert len(str(error)) < MESSAGE_LIMIT, str(error)[:300]


@fuzz_settings(40)
@given(hostile_text(manifest_text()))
@example(b"path,label\n" + b"x" * (1 << 20) + b",calm\n")          # csv's 128 kB field limit
@example(manifest_text().encode("utf-16"))                        # not UTF-8
@example(b"path,label\nmusic/calm/0.wav\0,calm\nmusic/loud/0.wav,loud\n")
@example(b'path,label\n"music/calm/0.wav\n,calm\nmusic/loud/0.wav,loud\n')
def test_damaged_manifests(data):
    music_folder()
    path = SCRATCH / "hostile.csv"
    path.write_bytes(data)
    with hang_guard(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tracks = open_tracklist(str(path))
        except DataError as error:
            check_data_error(error, path)
            tracks = None
    check_warnings(caught)
    if tracks is not None:
        assert isinstance(tracks, TrackList) and tracks.tracks
        for track in tracks.tracks:
            assert "\0" not in str(track.path) and "\n" not in track.name


# ------------------------------------------------------------------------------ ISMIR 2004
@functools.lru_cache(maxsize=None)
def ismir_audio() -> Path:
    """``audio/<subset>/<on-disk name>`` for every release row (tiny WAV bytes: only the names
    matter to the track-list reader)."""
    audio = SCRATCH / "ismir-audio"
    for subset, rows in SUBSETS.items():
        for _, on_disk in rows:
            target = audio / subset / on_disk
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target.with_suffix(".wav"), tone(1), 8000)
            target.write_bytes(target.with_suffix(".wav").read_bytes())
    return audio


def ismir_texts() -> dict:
    """The release's metadata files: three track lists and a development ground truth."""
    texts = {f"{subset}/tracklist.csv": "".join(row + "\n" for row, _ in rows)
             for subset, rows in SUBSETS.items()}
    texts["development/ground_truth.csv"] = "".join(
        f"{on_disk},{row.split(',')[0].strip(chr(34))}\n" for row, on_disk in SUBSETS["development"])
    return texts


@st.composite
def damaged_release(draw):
    texts = {name: text.encode() for name, text in ismir_texts().items()}
    name = draw(st.sampled_from(sorted(texts)))
    texts[name] = draw(hostile_text(ismir_texts()[name]))
    return name, texts


@fuzz_settings(40)
@given(damaged_release())
@example(("training/tracklist.csv", {**{n: t.encode() for n, t in ismir_texts().items()},
                                     "training/tracklist.csv":
                                     b'"classical","a","b","c","1","' + b"9" * 5000 + b'x.mp3"\n'}))
@example(("development/ground_truth.csv", {**{n: t.encode() for n, t in ismir_texts().items()},
                                           "development/ground_truth.csv":
                                           b'"' + b"x" * (1 << 18) + b'",classical\n'}))
def test_damaged_ismir2004_metadata(case):
    damaged, texts = case
    root = SCRATCH / "ismir"
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    if not (root / "audio").exists():
        (root / "audio").symlink_to(ismir_audio(), target_is_directory=True)
    for name, data in texts.items():
        (root / "metadata" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "metadata" / name).write_bytes(data)
    with hang_guard(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tracks = ismir2004(root)
        except DataError as error:
            check_data_error(error, root / "metadata" / damaged)
            tracks = None
    check_warnings(caught)
    if tracks is not None:
        assert all(track.path.is_file() for track in tracks.tracks)


# ----------------------------------------------------------- hostile files among good songs
HOSTILE_AUDIO = {
    "empty.wav": b"",
    "text.mp3": b"this is not audio at all, whatever its name says\n" * 20,
    # a RIFF header declaring 2^31 frames of 16-bit mono over 1 kB of data
    "huge.wav": b"RIFF" + (1060).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + bytes.fromhex("01000100401f0000803e00000200 1000".replace(" ", ""))
    + b"data" + (2 ** 32 - 2).to_bytes(4, "little") + bytes(range(256)) * 4,
}


def test_hostile_files_among_songs_are_skipped_by_name_and_the_rest_decoded(tmp_path):
    """The issue's 'a hostile file in a folder of songs': dataset scanning and decoding skips
    and names every hostile file and keeps every song."""
    root = tmp_path / "music"
    for label in ("calm", "loud"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            sf.write(root / label / f"{i}.wav", tone(10 * len(label) + i), 8000)
    for name, data in HOSTILE_AUDIO.items():
        (root / "calm" / name).write_bytes(data)
    tracks = open_tracklist(str(root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = load_corpus(tracks, 16000, tmp_path / "cache", progress=False)
    assert sorted(corpus.names) == sorted(f"{label}/{i}.wav" for label in ("calm", "loud")
                                          for i in range(3))
    assert len(corpus.failures) == len(HOSTILE_AUDIO)
    for name in HOSTILE_AUDIO:
        assert sum(name in failure for failure in corpus.failures) == 1, corpus.failures
        assert any(name in str(w.message) for w in caught)
    check_warnings(caught)
