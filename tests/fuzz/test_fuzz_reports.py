"""Fuzzing the run files ``mssincresnet plot`` reads: a run's ``log.csv`` (``plot curves``) and
a report's JSON (``plot confusion``).

The honest files come from the real writers' formats: ``log.csv`` from
:func:`models.logs.write_logs` with the rows the trainer logs, and a report holding the scores
``evaluate`` writes (confusion matrix, class names, song accuracy), at the top level or under
``test`` as train's report.json has them. Damaged copies must draw a figure or end the command
with one line naming the file (status 2), never a traceback.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, strategies as st

from models.cli import main
from models.base.logs import write_logs
from tests.fuzz.support import assert_clean_cli, fuzz_settings, hang_guard, mutated

pytestmark = pytest.mark.fuzz

_SCRATCH = tempfile.TemporaryDirectory(prefix="sincfb-fuzz-reports-")
SCRATCH = Path(_SCRATCH.name)
HISTORY = [{"epoch": e, "lr": 0.005 / 2 ** (e // 3), "train_loss": 1.5 / (e + 1),
            "train_clip_accuracy": 0.3 + 0.1 * e, "seconds": 12.5, "clips_per_second": 40.0,
            "valid_song_accuracy": 0.25 * e, "valid_clip_accuracy": 0.2 * e} for e in range(4)]
SCORES = {"confusion": [[3, 1, 0], [0, 4, 0], [1, 0, 2]], "classes": ["blues", "jazz", "rock"],
          "song_accuracy": 9 / 11}


def honest_log() -> bytes:
    write_logs(HISTORY, SCRATCH)
    return (SCRATCH / "log.csv").read_bytes()


def run_plot(argv: list, path: Path) -> None:
    """The command ends with status 0 (a figure) or 2 and one line naming ``path``."""
    stderr = io.StringIO()
    with hang_guard(), contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    assert_clean_cli(stderr.getvalue(), status)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    if status:
        assert status == 2 and len(lines) == 1 and path.name in lines[0], stderr.getvalue()


REGRESSIONS = {
    "extra cells": lambda honest: honest + b"9,1,2,3,4,5,6,7,8,9,10\n",   # a list in DictReader
    "epoch only": lambda honest: b"epoch\n0\n",   # found by the deep run: matplotlib got None
}


@fuzz_settings(6, 1000)
@given(st.data())
@example("extra cells")
@example("epoch only")
def test_damaged_training_logs(data):
    honest = honest_log()
    hostile = SCRATCH / "hostile-log.csv"
    hostile.write_bytes(REGRESSIONS[data](honest) if isinstance(data, str)
                        else data.draw(mutated(honest, header=len(honest))))
    run_plot(["plot", "curves", "--log", str(hostile), "--out", str(SCRATCH / "c.png")], hostile)


REPORT_VALUES = (st.none() | st.booleans() | st.integers(-5, 2 ** 70) | st.floats()
                 | st.text(max_size=6) | st.lists(st.integers(-1, 5), max_size=4)
                 | st.lists(st.lists(st.integers(-1, 5), max_size=4), max_size=4))


@st.composite
def damaged_report(draw) -> bytes:
    report = dict(SCORES) if draw(st.booleans()) else {"test": dict(SCORES), "demo": False}
    scores = report.get("test", report)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(("confusion", "classes", "song_accuracy")))
        if draw(st.integers(0, 3)) == 0:
            scores.pop(key, None)
        else:
            scores[key] = draw(REPORT_VALUES)
    data = json.dumps(report).encode()
    return draw(mutated(data, header=len(data))) if draw(st.integers(0, 3)) == 0 else data


@fuzz_settings(4, 1000)
@given(damaged_report())
@example(json.dumps({**SCORES, "classes": []}).encode())        # a ZeroDivisionError
@example(json.dumps({**SCORES, "confusion": [[1] * 2000] * 2000}).encode())  # 4 M cells
@example(b"[" * 100000)
@example(json.dumps({**SCORES, "confusion": [[1, 2], [3]]}).encode())
def test_damaged_reports(data):
    hostile = SCRATCH / "hostile-report.json"
    hostile.write_bytes(data)
    run_plot(["plot", "confusion", "--report", str(hostile), "--out", str(SCRATCH / "m.png")],
             hostile)
