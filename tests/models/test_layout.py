"""What the floors of ``models`` keep for users: the old module paths (README, bench and fixtures
name them) are the moved modules themselves, the former ``models.data`` names are still offered,
and the command line speaks in one voice (``models.base.messages``)."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# old path -> new home; the README names models.checkpoints, models.export, models.summary and
# models.recipes, bench/ names models.audio, models.fileio and models.data, tests/fixtures
# models.synthetic
MOVED = {"models.audio": "models.data.audio", "models.fileio": "models.base.fileio",
         "models.synthetic": "models.data.synthetic",
         "models.checkpoints": "models.training.checkpoints",
         "models.export": "models.inference.export", "models.summary": "models.nets.summary",
         "models.recipes": "models.training.recipes"}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_moved_module(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_the_names_the_readme_and_bench_use_resolve():
    from models.base.datafiles import EARLIER_FORMAT_TYPES
    from models.checkpoints import EARLIER_FORMAT_TYPES as old_types
    from models.data import DataError, manifest
    from models.data.readers.manifest import manifest as reader
    from models.data.tracks import DataError as error_class
    from models.export import export_classifier
    from models.inference.export import export_classifier as exporter

    assert old_types is EARLIER_FORMAT_TYPES and export_classifier is exporter
    assert manifest is reader and DataError is error_class
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        importlib.import_module("models.data").nothing


def test_python_m_on_an_old_path_runs_the_moved_module():
    done = subprocess.run([sys.executable, "-m", "models.recipes"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("| setting | field | `paper` |")


def test_note_warn_and_error_are_one_line_each_on_stderr(capsys):
    from models.base.messages import error, note, warn

    note(None)
    note("")
    assert capsys.readouterr() == ("", "")
    note("first")
    warn("second")
    error("third")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["mssincresnet: note: first",
                                         "mssincresnet: warning: second",
                                         "mssincresnet: error: third"]
