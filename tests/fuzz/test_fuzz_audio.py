"""Fuzzing the audio reader (models.audio.load_audio) with damaged real files.

Every base file is written by soundfile (libsndfile, the library the reader decodes with) in one
of the formats the project reads; hypothesis then damages its bytes: header fields set to
boundary values, declared lengths, channel counts and sample rates far beyond the data, cuts at
any offset, inserted and repeated bytes. The reader must return a finite mono track or raise an
:class:`AudioError` of one line naming the file, within a bounded time and without allocating
more than the file's real size supports.
"""
from __future__ import annotations

import functools
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, strategies as st

from models.data.audio import AudioError, load_audio, resample, sinc_resample
from models.base.choices import SAMPLE_RATES
from tests.fuzz.support import (MemoryPeak, assert_one_line_naming, fuzz_settings, hang_guard,
                                memory_budget, mutated)

pytestmark = pytest.mark.fuzz

# (extension, soundfile format, subtype, channels, rate): one base file each
BASES = (("wav", "WAV", "PCM_16", 2, 8000), ("wav", "WAV", "FLOAT", 1, 11025),
         ("wav", "WAV", "PCM_24", 3, 8000), ("wav", "WAV", "ULAW", 1, 8000),
         ("flac", "FLAC", "PCM_16", 2, 8000), ("flac", "FLAC", "PCM_24", 1, 22050),
         ("ogg", "OGG", "VORBIS", 2, 8000), ("ogg", "OGG", "VORBIS", 1, 16000),
         ("mp3", "MP3", "MPEG_LAYER_III", 2, 8000), ("mp3", "MP3", "MPEG_LAYER_III", 1, 16000),
         ("au", "AU", "PCM_16", 1, 8000), ("aiff", "AIFF", "PCM_16", 2, 8000))
_SCRATCH = tempfile.TemporaryDirectory(prefix="sincfb-fuzz-audio-")


@functools.lru_cache(maxsize=None)
def base_bytes(index: int) -> bytes:
    """The bytes of ``BASES[index]``: 0.25 s of two tones and noise (seeded by the index)."""
    ext, fmt, subtype, channels, rate = BASES[index]
    rng = np.random.default_rng(index)
    t = np.arange(rate // 4) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] * (1 + 0.2 * np.arange(channels)) \
        + 0.05 * rng.standard_normal((t.size, channels))
    path = Path(_SCRATCH.name) / f"base{index}.{ext}"
    sf.write(path, wave.astype(np.float32), rate, format=fmt, subtype=subtype)
    return path.read_bytes()


def written(data: bytes, ext: str) -> Path:
    """``data`` as ``hostile.<ext>`` in the scratch folder (one file, overwritten per example)."""
    path = Path(_SCRATCH.name) / f"hostile.{ext}"
    path.write_bytes(data)
    return path


def check_reader(path: Path, resampler: str = "numpy") -> None:
    """``load_audio(path)`` gives a finite mono float32 track or a one-line AudioError naming
    the file, without hanging and within the memory the file's size supports."""
    with hang_guard(), MemoryPeak() as peak:
        try:
            track = load_audio(path, 16000, resampler=resampler)
        except AudioError as error:
            assert_one_line_naming(error, path)
            track = None
    assert peak.bytes <= memory_budget(path), \
        f"{peak.bytes} bytes allocated for a {path.stat().st_size}-byte file"
    if track is not None:
        assert track.dtype == np.float32 and track.ndim == 1 and np.isfinite(track).all()


@st.composite
def damaged_files(draw):
    index = draw(st.integers(0, len(BASES) - 1))
    return index, draw(mutated(base_bytes(index)))


@fuzz_settings(40, 10000)
@given(damaged_files())
def test_damaged_audio_files(case):
    index, data = case
    check_reader(written(data, BASES[index][0]))


def wav_bytes(channels, rate, bits, tag, data_size, payload, riff_size=None, block_align=None):
    """A RIFF/WAVE file with these header fields (any values, consistent or not) and payload."""
    align = channels * bits // 8 if block_align is None else block_align
    fmt = struct.pack("<HHIIHH", tag, channels % 65536, rate, (rate * align) % 2 ** 32,
                      align % 65536, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", data_size) + payload
    return b"RIFF" + struct.pack("<I", (len(body) if riff_size is None else riff_size)) + body


U32 = st.sampled_from((0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1)) | st.integers(0, 2 ** 32 - 1)


@fuzz_settings(40, 5000)
@given(channels=st.sampled_from((0, 1, 2, 3, 1024, 1025, 65535)) | st.integers(0, 65535),
       rate=st.sampled_from((0, 1, 999, 1000, 8000, 44101, 768000, 768001, 2 ** 31 - 1))
       | st.integers(0, 2 ** 32 - 1),
       bits=st.sampled_from((0, 8, 16, 24, 32, 64)) | st.integers(0, 65535),
       tag=st.sampled_from((1, 3, 6, 7, 0xFFFE)) | st.integers(0, 65535),
       data_size=U32, riff_size=st.none() | U32,
       block_align=st.none() | st.integers(0, 65535),
       payload=st.binary(max_size=2048))
@example(2, 1, 16, 1, 2 ** 31 - 1, None, None, bytes(1024))        # 1 Hz: 16000x upsampling
@example(2, 44101, 16, 1, 2 ** 31, None, None, bytes(range(256)) * 4)  # 16000 x 44135 taps
@example(2, 2 ** 31 - 1, 16, 1, 1024, None, None, bytes(range(256)) * 4)
@example(2, 7944, 16, 1, 7936, None, None, bytes(range(256)) * 31)  # found by the deep run:
# 993 -> 2000 after the gcd, a 2 M-tap filter whose float64 temporaries took 72 MB for 8 kB
@example(1, 8000, 16, 1, 2 ** 32 - 1, None, None, bytes(range(256)) * 4)
def test_wav_header_fields(channels, rate, bits, tag, data_size, riff_size, block_align, payload):
    data = wav_bytes(channels, rate, bits, tag, data_size, payload, riff_size, block_align)
    check_reader(written(data, "wav"))


def flac_with_streaminfo(rate: int, channels: int, bits: int, total: int) -> bytes:
    """A real FLAC file whose STREAMINFO declares another sample rate (20 bits), channel count
    (1..8), sample width (4..32 bits) and total of frames (36 bits)."""
    data = bytearray(base_bytes(4))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0          # STREAMINFO comes first
    packed = (rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36) | total
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


@fuzz_settings(25, 3000)
@given(rate=st.integers(0, 2 ** 20 - 1), channels=st.integers(1, 8), bits=st.integers(4, 32),
       total=st.sampled_from((0, 1, 2 ** 31, 2 ** 36 - 1)) | st.integers(0, 2 ** 36 - 1))
@example(8000, 2, 16, 2 ** 36 - 1)         # 1.5 kB declaring 2^36 frames: 512 GiB at one read
@example(8000, 2, 16, 2 ** 27)             # 1 GiB: soundfile's one read allocated it all
def test_flac_streaminfo_fields(rate, channels, bits, total):
    check_reader(written(flac_with_streaminfo(rate, channels, bits, total), "flac"))


def test_a_wav_declaring_2_to_the_31_frames_in_1_kb_is_refused_cheaply():
    """The issue's example: the header's data size says 2^31 frames, the file holds 1 kB."""
    path = written(wav_bytes(1, 8000, 16, 1, 2 ** 32 - 2, bytes(range(256)) * 4), "wav")
    with MemoryPeak() as peak, pytest.raises(AudioError, match="truncated") as info:
        load_audio(path)
    assert_one_line_naming(info.value, path)
    assert peak.bytes < MEMORY_BUDGET_SMALL


MEMORY_BUDGET_SMALL = 16 << 20


@pytest.mark.parametrize("rate", [SAMPLE_RATES[0] - 1, SAMPLE_RATES[1] + 1])
def test_sample_rates_outside_the_native_range_are_refused(rate):
    path = written(wav_bytes(1, rate, 16, 1, 2048, bytes(range(256)) * 8), "wav")
    with pytest.raises(AudioError, match=f"sample rate of {rate} Hz") as info:
        load_audio(path)
    assert_one_line_naming(info.value, path)


def test_unusual_rates_resample_through_the_fft_without_a_huge_filter(monkeypatch):
    """44101 Hz -> 16000 Hz: torchaudio's polyphase filter would hold 16000 x 44135 taps
    (2.8 GB). Both resamplers take the FFT path instead, and agree with an independent float64
    oracle: the band-limited interpolation of a pure tone is the same tone at the new rate."""
    import torchaudio.functional

    def refuse(*args, **kwargs):
        raise AssertionError("torchaudio's resampler was asked for a 16000 x 44135 filter")

    monkeypatch.setattr(torchaudio.functional, "resample", refuse)
    seed = 20
    print("seed", seed)
    rng = np.random.default_rng(seed)
    freq, n = rng.uniform(300, 3000), 44101 // 2
    x = np.sin(2 * np.pi * freq * np.arange(n) / 44101)
    # a whole number of periods in the window keeps the FFT method's periodic assumption exact
    freq = round(freq * n / 44101) * 44101 / n
    x = np.sin(2 * np.pi * freq * np.arange(n) / 44101)
    m = int(np.ceil(16000 * n / 44101))
    want = np.sin(2 * np.pi * freq * np.arange(m) * (n / m) / 44101)
    for got in (resample(x.astype(np.float32), 44101, 16000),
                sinc_resample(x.astype(np.float32), 44101, 16000)):
        assert got.shape == (m,)
        assert np.abs(got - want).max() < 1e-4 * np.abs(want).max() + 1e-5


def test_a_name_longer_than_the_system_allows_is_an_audio_error(tmp_path):
    """A manifest can name a 5000-character path: stat() raises OSError, the reader says so."""
    path = tmp_path / ("x" * 5000 + ".wav")
    with pytest.raises(AudioError, match="cannot open the file") as info:
        load_audio(path)
    assert "\n" not in str(info.value)
