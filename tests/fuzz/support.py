"""What every fuzz test shares: its hypothesis settings, a bound on time and on memory, and the
checks that a reader's failure is one line that names the file.

The settings follow ``SINCFB_HYPOTHESIS_PROFILE``: unset or ``ci`` runs each fuzz test on a few
derandomized examples (the default test run spends under a minute on all of them on 2 cores),
``dev`` on as few with fresh seeds, ``deep`` (a nightly run) on each test's deep count (about
half an hour for the suite on 2 cores; ``SINCFB_FUZZ_DEEP_SCALE`` multiplies the counts) with
fresh seeds. No setting has a deadline: a slow example is not a failure, a hung one is
(:func:`hang_guard`). Run the deep setting with
``SINCFB_HYPOTHESIS_PROFILE=deep pytest -m fuzz --hypothesis-show-statistics``.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st

PROFILE = os.environ.get("SINCFB_HYPOTHESIS_PROFILE", "ci")
DEEP_SCALE = float(os.environ.get("SINCFB_FUZZ_DEEP_SCALE", "1"))
# A reader that takes longer than this on one small file is hung: the watchdog prints every
# thread's stack and ends the run (a hang in C cannot be interrupted any other way).
HANG_SECONDS = 120
# Memory a reader may take for one file: a fixed allowance plus a multiple of the file's size
# (decoding, mixing and resampling a small file at 1 kHz to 16 kHz stays far below it); what a
# header's numbers would make it take (2^31 frames: 8 GB) is far above.
MEMORY_FIXED = 64 << 20
MEMORY_PER_BYTE = 256


def fuzz_settings(examples: int, deep_examples: int) -> settings:
    """The hypothesis settings of a fuzz test that tries ``examples`` inputs in the default run
    and ``deep_examples`` in the deep one."""
    deep = PROFILE == "deep"
    # function_scoped_fixture: the autouse fixture that blocks weight downloads is function
    # scoped; it patches a function once and holds no per-example state.
    return settings(max_examples=max(1, round(deep_examples * DEEP_SCALE)) if deep else examples,
                    derandomize=PROFILE == "ci", deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_SECONDS):
    """End the process with every thread's stack if the block runs longer than ``seconds``."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


class MemoryPeak:
    """The peak of the Python and numpy allocations (numpy reports its buffers to tracemalloc)
    made inside ``with MemoryPeak() as peak:``, in bytes, as ``peak.bytes``."""

    def __enter__(self):
        self.was_tracing = tracemalloc.is_tracing()
        if not self.was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self.base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc):
        self.bytes = tracemalloc.get_traced_memory()[1] - self.base
        if not self.was_tracing:
            tracemalloc.stop()
        return False


def memory_budget(path: Path) -> int:
    """The most a reader may allocate for ``path`` (see :data:`MEMORY_FIXED`)."""
    return MEMORY_FIXED + MEMORY_PER_BYTE * path.stat().st_size


def assert_one_line_naming(error: BaseException, path) -> None:
    """``error`` is a one-line message that names ``path`` (its file name at least)."""
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, \
        f"not a one-line error: {message!r}"
    assert Path(path).name in message, f"the error does not name {Path(path).name}: {message!r}"


def assert_clean_cli(stderr: str, status: int) -> None:
    """The command ended with a usage status and no Python traceback."""
    assert "Traceback" not in stderr, stderr
    assert status in (0, 1, 2), (status, stderr)


# ------------------------------------------------------------- hostile files among songs
HOSTILE_AUDIO = {
    "empty.wav": b"",
    "text.mp3": b"this is not audio at all, whatever its name says\n" * 20,
    # a RIFF header declaring 2^31 frames of 16-bit mono at 8 kHz over 1 kB of data
    "huge.wav": b"RIFF" + (1060).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + bytes.fromhex("01000100401f0000803e00000200" "1000")
    + b"data" + (2 ** 32 - 2).to_bytes(4, "little") + bytes(range(256)) * 4,
    # a 1 Hz sample rate: 16000x upsampling
    "slow.wav": b"RIFF" + (1060).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + bytes.fromhex("010001000100000002000000020010 00".replace(" ", ""))
    + b"data" + (1024).to_bytes(4, "little") + bytes(range(256)) * 4,
}


def song_folder_with_hostile_files(root: Path, rate: int = 8000) -> tuple[list, list]:
    """``root/<calm|loud>/<i>.wav``: six real quarter-second songs, and the files of
    :data:`HOSTILE_AUDIO` among the calm ones; returns ``(song paths, hostile paths)``."""
    import numpy as np
    import soundfile

    good, hostile = [], []
    for label in ("calm", "loud"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            rng = np.random.default_rng([len(label), i])
            t = np.arange(rate // 4) / rate
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.1
            soundfile.write(root / label / f"{i}.wav", wave.astype(np.float32), rate)
            good.append(root / label / f"{i}.wav")
    for name, data in HOSTILE_AUDIO.items():
        (root / "calm" / name).write_bytes(data)
        hostile.append(root / "calm" / name)
    return good, hostile


# ----------------------------------------------------------------------- byte mutations
INTERESTING = (0, 1, 2, 3, 7, 255, 256, 1000, 32767, 32768, 65535, 65536, 2 ** 24, 2 ** 31 - 1,
               2 ** 31, 2 ** 32 - 1, 2 ** 36 - 1, 2 ** 63 - 1, 2 ** 64 - 1)


@st.composite
def mutated(draw, original: bytes, header: int = 64) -> bytes:
    """``original`` with one to four mutations, most of them in its first ``header`` bytes:
    a byte set to any value, an integer field overwritten with a boundary value (little or big
    endian, 1 to 8 bytes), random bytes inserted, a slice repeated, or a cut at any offset."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        limit = min(len(data), header) if draw(st.booleans()) else len(data)
        offset = draw(st.integers(0, limit - 1))
        kind = draw(st.sampled_from(("byte", "integer", "insert", "repeat", "cut")))
        if kind == "byte":
            data[offset] = draw(st.integers(0, 255))
        elif kind == "integer":
            width = draw(st.sampled_from((1, 2, 4, 8)))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2 ** (8 * width) - 1))
            order = draw(st.sampled_from(("little", "big")))
            data[offset:offset + width] = (value % 2 ** (8 * width)).to_bytes(width, order)
        elif kind == "insert":
            data[offset:offset] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            end = draw(st.integers(offset, min(len(data), offset + 4096)))
            data[offset:offset] = data[offset:end] * draw(st.integers(1, 4))
        else:
            del data[offset:]
    return bytes(data)
