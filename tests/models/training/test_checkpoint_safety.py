"""Checkpoints are data, never code (issue 20, item 1).

Hostile files: a pickle can call any importable function while it loads, so each layout sincfb
reads (its own format, the authors' main.py dict, a bare state dict) is saved here with one value
that pickles as a call of ``os.system`` or ``exec`` creating a marker file. Every command that
reads a checkpoint must refuse it in one line, and the marker must never appear.

Honest files: the same commands succeed on the checkpoint the previous release wrote
(tests/fixtures/release-sincnet.pt, see its README), on the authors' main.py dict as their code
saves it from the GPU (GitHub PeiChunChang/MS-SincResNet @ 98b40394, main.py: ``torch.save({
'epoch', 'state_dict': model.state_dict(), 'train_loss', 'train_acc'})`` of a ``.cuda()`` model,
``train_loss`` a CUDA tensor that requires grad) and on a bare state dict.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from collections import OrderedDict
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.serialization import get_unsafe_globals_in_checkpoint

from models.base.datafiles import CheckpointError, load_data_file, plain_data
from models.training.checkpoints import load_checkpoint, save_checkpoint
from models.cli import main
from models.data.synthetic import GENRES, synthesize_song
from tests.fixtures.make_release_checkpoint import write_songs
from tests.models.authors_release import as_saved_from_cuda, released_checkpoint
from tests.models.training.test_authors_checkpoint import compact_release, random_release  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
RELEASE = REPO / "tests" / "fixtures" / "release-sincnet.pt"
REFUSAL = "holds Python objects that could run code"
COMMANDS = ("predict", "evaluate", "export", "plot filterbank", "train --resume")
# ONNX with the export extra (as CI installs it), else torch.export, which needs only torch
EXPORT = "onnx" if all(find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")) \
    else "torch-export"
EXPORTED = "model.onnx" if EXPORT == "onnx" else "model.pt2"


class RunsCode:
    """Pickles as a call that creates ``marker``: ``os.system('touch ...')`` or ``exec``."""

    def __init__(self, marker: Path, via: str):
        self.marker, self.via = marker, via

    def __reduce__(self):
        if self.via == "system":
            return os.system, (f"touch '{self.marker}'",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def release_like_state() -> OrderedDict:
    """Tensors under the keys by which the authors' state dict is recognised (tiny shapes: the
    file is refused before any shape matters)."""
    return OrderedDict([("layerNorm.weight", torch.ones(1, 16)),
                        ("sincNet1.0.low_hz_", torch.rand(4, 1)),
                        ("resnet.model.fc.weight", torch.randn(10, 512))])


def hostile(layout: str, payload: RunsCode):
    """A file of ``layout`` with ``payload`` in a place a plain ``pickle.load`` reaches."""
    if layout == "project":
        state = load_data_file(RELEASE)
        state["history"][0]["train_loss"] = payload
        return state
    if layout == "authors":
        return {"epoch": 3, "state_dict": release_like_state(), "train_loss": payload,
                "train_acc": torch.rand(())}
    return OrderedDict([*release_like_state().items(), ("num_batches_tracked", payload)])


def argv(command: str, checkpoint: Path, work: Path) -> list[str]:
    """The command line of ``command`` on ``checkpoint``; its inputs are made under ``work``."""
    song = work / "song.wav"
    if not song.exists():
        soundfile.write(song, synthesize_song(GENRES[1], 1.0, 16000, np.random.default_rng(1)),
                        16000)
    return {
        "predict": ["predict", str(song), "--checkpoint", str(checkpoint), "--device", "cpu"],
        "evaluate": ["evaluate", str(work / "songs"), "--checkpoint", str(checkpoint), "--device",
                     "cpu", "--no-progress", "--cache-dir", str(work / "cache"), "--out",
                     str(work / "evaluation")],
        "export": ["export", "--checkpoint", str(checkpoint), "--format", EXPORT, "--out",
                   str(work / EXPORTED)],
        "plot filterbank": ["plot", "filterbank", "--checkpoint", str(checkpoint), "--out",
                            str(work / "filterbank.png")],
        "train --resume": ["train", str(work / "songs"), "--resume", str(checkpoint), "--out",
                           str(work / "run"), "--no-progress", "--cache-dir", str(work / "cache")],
    }[command]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "the checkpoint's payload ran"


def test_the_payload_runs_under_a_plain_pickle_load(tmp_path):
    """The stand-in is a live exploit: an unrestricted unpickler runs it (why sincfb uses none)."""
    for via in ("system", "exec"):
        ran = tmp_path / f"ran-{via}"
        pickle.loads(pickle.dumps(RunsCode(ran, via)))
        assert ran.exists()


@pytest.mark.parametrize("via", ["system", "exec"])
@pytest.mark.parametrize("layout", ["project", "authors", "bare"])
def test_every_command_refuses_a_checkpoint_that_would_run_code(layout, via, tmp_path, marker,
                                                                capsys):
    path = tmp_path / ("MS-SincResNet.tar" if layout == "authors" else "model.pth")
    torch.save(hostile(layout, RunsCode(marker, via)), path)
    for command in COMMANDS:
        assert main(argv(command, path, tmp_path)) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and REFUSAL in err[0] and str(path) in err[0], (command, err)
        assert ("posix.system" if via == "system" else "exec") in err[0]
        assert "weights_only" not in err[0]


@pytest.mark.parametrize("layout, command", [("authors", "predict"), ("project", "train --resume")])
def test_the_command_line_refuses_it_in_a_fresh_process(layout, command, tmp_path, marker):
    path = tmp_path / "checkpoint.tar"
    torch.save(hostile(layout, RunsCode(marker, "system")), path)
    done = subprocess.run([sys.executable, "-m", "models", *argv(command, path, tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mssincresnet: error: {path}: refused: the file holds Python objects that could run "
        "code when loaded (posix.system); sincfb reads checkpoints as data only and does not "
        "execute them"]


def test_the_python_api_and_the_backbone_loader_refuse_it(tmp_path, marker):
    from models import MSSincResNet, compact_config

    path = tmp_path / "resnet18.pth"
    torch.save(hostile("bare", RunsCode(marker, "exec")), path)
    with pytest.raises(CheckpointError, match=REFUSAL):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=REFUSAL):
        MSSincResNet(10, backbone_weights=path, **compact_config("mssincresnet"))


def test_a_pickle_of_another_protocol_or_a_numpy_array_is_refused_too(tmp_path, marker, recwarn):
    """torch.save writes protocol 2 (GLOBAL); a file may be of protocol 4 (STACK_GLOBAL, which
    PyTorch's unpickler stops at its first FRAME) or hold numpy's array rebuilder, which is not
    on the allow-list."""
    path = tmp_path / "p4.pt"
    torch.save({"a": RunsCode(marker, "system")}, path, pickle_protocol=4)
    with pytest.raises(CheckpointError, match="not a readable checkpoint .*instruction 149"):
        load_data_file(path)
    assert not recwarn.list
    torch.save({"splits": np.arange(3)}, path)
    with pytest.raises(CheckpointError, match=REFUSAL + r".*_reconstruct"):
        load_data_file(path)


# ----------------------------------------------------------------------------- honest files
@pytest.fixture(scope="module")
def release_songs(tmp_path_factory):
    """The songs the fixture checkpoint was trained on, and one more to classify."""
    return write_songs(tmp_path_factory.mktemp("release-songs"))


def test_the_previous_release_needs_no_allow_list_and_loads_unchanged():
    assert get_unsafe_globals_in_checkpoint(RELEASE) == []
    model, state = load_checkpoint(RELEASE)
    raw = torch.load(RELEASE, weights_only=True, map_location="cpu")
    assert state["format"] == "sincfb-genre/1" and state["epoch"] == 2
    assert state["card"]["software"]["git_commit"].startswith("c0b40b0")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["model_state"][key]), key


def test_every_command_runs_on_the_previous_releases_checkpoint(release_songs, tmp_path, capsys):
    shutil.copytree(release_songs, tmp_path / "songs")
    for command in ("predict", "evaluate", "export", "plot filterbank"):
        assert main(argv(command, RELEASE, tmp_path)) == 0, (command, capsys.readouterr().err)
    assert "song.wav" in capsys.readouterr().out
    report = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert report["split"] == "test" and report["songs"] == 3
    assert (tmp_path / EXPORTED).stat().st_size > 0 and (tmp_path / "filterbank.png").is_file()
    run = tmp_path / "run"                   # a run folder as the release left it
    run.mkdir()
    for name in ("last.pt", "best.pt"):
        shutil.copyfile(RELEASE, run / name)
    assert main(["train", str(release_songs), "--out", str(run), "--resume", "--epochs", "3",
                 "--no-progress", "--cache-dir", str(tmp_path / "cache")]) == 0
    resumed = load_data_file(run / "last.pt")
    assert resumed["epoch"] == 3 and [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    assert get_unsafe_globals_in_checkpoint(run / "last.pt") == []


def main_py_file(theirs, path: Path, wrapped: bool = True, cuda: bool = True) -> Path:
    """``theirs`` saved as their main.py saves it (a CUDA model; ``train_loss`` requires grad),
    or its bare state dict."""
    torch.save(released_checkpoint(theirs, epoch=11) if wrapped else theirs.state_dict(), path)
    if cuda:
        as_saved_from_cuda(path)
    return path


def test_the_cuda_stand_in_records_the_gpu(tmp_path, compact_release):
    path = main_py_file(random_release(6, torch.float32, **compact_release), tmp_path / "c.tar")
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"cuda:0" in pickled and b"X\x03\x00\x00\x00cpu" not in pickled
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)           # as on a machine without a GPU
    loaded = torch.load(path, weights_only=True, map_location="cpu")
    assert loaded["train_loss"].requires_grad and loaded["epoch"] == 11


@pytest.mark.parametrize("layout", ["main.py", "bare", "legacy"])
def test_the_authors_layouts_load_as_data(layout, tmp_path, compact_release):
    theirs = random_release(7, torch.float32, **compact_release)
    path = tmp_path / ("checkpoint_11.tar" if layout != "bare" else "MS-SincResNet.pth")
    if layout == "legacy":           # the pre-1.6 format: a sequence of pickles, not a zip
        torch.save(released_checkpoint(theirs, epoch=11), path,
                   _use_new_zipfile_serialization=False)
    else:
        main_py_file(theirs, path, wrapped=layout == "main.py")
    model, record = load_checkpoint(path)
    assert record["epoch"] == (None if layout == "bare" else 11)
    x = torch.randn(2, 1, compact_release["clip_samples"])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), theirs.eval()(x)[0], rtol=1e-4, atol=1e-5)


def test_commands_run_on_the_authors_main_py_file(tmp_path, compact_release, capsys):
    path = main_py_file(random_release(8, torch.float32, **compact_release),
                        tmp_path / "checkpoint_11.tar")
    for command in ("predict", "export", "plot filterbank"):
        assert main(argv(command, path, tmp_path)) == 0, (command, capsys.readouterr().err)
    assert "song.wav" in capsys.readouterr().out
    assert (tmp_path / EXPORTED).is_file() and (tmp_path / "filterbank.png").is_file()
    assert main(argv("train --resume", path, tmp_path)) == 2      # theirs cannot be resumed
    assert "not a checkpoint written by sincfb's training" in capsys.readouterr().err


# ------------------------------------------------------------------------ what is written
def test_what_the_trainer_writes_is_plain_data(tiny_run):
    for name in ("best.pt", "last.pt"):
        assert get_unsafe_globals_in_checkpoint(tiny_run / name) == []


def test_non_plain_values_are_converted_when_written(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Spec:
        fold: int
        where: Path

    state = {"format": "x", "a": np.float64(0.25), "b": np.int64(3), "c": np.bool_(True),
             "splits": {"test": np.arange(4)}, "path": Path("runs") / "a",
             "spec": Spec(np.int32(2), Path("/data")), "shape": torch.Size([2, 3]),
             "weights": OrderedDict(w=torch.ones(2))}
    save_checkpoint(state, tmp_path / "c.pt")
    assert get_unsafe_globals_in_checkpoint(tmp_path / "c.pt") == []
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert back["a"] == 0.25 and type(back["a"]) is float and type(back["b"]) is int
    assert back["c"] is True and back["splits"]["test"] == [0, 1, 2, 3]
    assert back["path"] == os.path.join("runs", "a") and back["spec"] == {"fold": 2, "where": "/data"}
    assert back["shape"] == (2, 3) and torch.equal(back["weights"]["w"], torch.ones(2))
    with pytest.raises(TypeError, match=r"\['bad'\] holds a builtins.object"):
        save_checkpoint({"bad": object()}, tmp_path / "d.pt")
    assert not (tmp_path / "d.pt").exists()


def test_earlier_non_plain_values_load_through_the_allow_list(tmp_path):
    """Paths and numpy scalars (what a Python caller could have put into a checkpoint before they
    were converted) load, as plain values; nothing else on the allow-list is needed."""
    import pathlib

    torch.save({"config": {"backbone": pathlib.PosixPath("/weights/resnet18.pth")},
                "split_spec": {"fold": np.int64(2), "share": np.float32(0.5), "cv": np.bool_(1)}},
               tmp_path / "old.pt")
    state = load_data_file(tmp_path / "old.pt")
    assert state == {"config": {"backbone": "/weights/resnet18.pth"},
                     "split_spec": {"fold": 2, "share": 0.5, "cv": True}}
    assert type(state["split_spec"]["fold"]) is int


def with_pickle(path: Path, pickled: bytes) -> Path:
    """A zip checkpoint whose ``data.pkl`` is ``pickled`` (the other records as torch.save
    writes them)."""
    torch.save({}, path)
    with zipfile.ZipFile(path) as archive:
        records = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records:
            archive.writestr(name, pickled if name.endswith("/data.pkl") else data)
    return path


@pytest.mark.parametrize("contents, message", [
    (b"", "not a readable checkpoint"), (b"PK\x03\x04" + bytes(40), "not a readable checkpoint"),
    (b"hello, not a checkpoint\n", "not a readable checkpoint"),
    (bytes(range(256)) * 8, "not a readable checkpoint"),
    # a list nested 50,000 deep: loads (the unpickler is a loop), too deep to walk
    (b"\x80\x02" + b"]" * 50000 + b"a" * 49999 + b".", "not a checkpoint of plain data")])
def test_unreadable_files_are_one_line(tmp_path, contents, message):
    path = tmp_path / "x.pt"
    if contents.startswith(b"\x80\x02"):
        with_pickle(path, contents)
    else:
        path.write_bytes(contents)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_data_file(path)
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)


def test_a_value_of_another_type_is_one_line(tmp_path):
    torch.save({"dtype": torch.float32}, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of plain data.*torch.dtype"):
        load_data_file(tmp_path / "t.pt")
    assert json.dumps(plain_data({"k": (1, [2.0, None])})) == '{"k": [1, [2.0, null]]}'


# Damage to the fields every read needs, to those only a resume reads, and to the settings.
MODEL_DAMAGE = [lambda s: s.pop("config"), lambda s: s.update(config=[1, 2]),
                lambda s: s.update(classes="abc"), lambda s: s.update(classes=[1, 2, 3]),
                lambda s: s["model_state"].update(extra="not a tensor")]
RUN_DAMAGE = [lambda s: s.update(epoch="2"), lambda s: s.pop("torch_rng"),
              lambda s: s.update(epoch=True)]
SETTINGS_DAMAGE = [lambda s: s["config"].update(clip_seconds="long"),
                   lambda s: s["config"].update(model_kwargs=[3]),
                   lambda s: s["config"].update(model="resnet-9000"),
                   lambda s: s["model_state"].update({"sinc.low_hz_": torch.zeros(2, 2)})]


def damaged(tmp_path, damage) -> Path:
    state = load_data_file(RELEASE)
    damage(state)
    torch.save(state, tmp_path / "damaged.pt")
    return tmp_path / "damaged.pt"


def assert_one_line(read, path):
    with pytest.raises(CheckpointError) as caught:
        read(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize("damage", MODEL_DAMAGE + RUN_DAMAGE + SETTINGS_DAMAGE)
def test_a_damaged_checkpoint_of_the_project_is_one_line(damage, tmp_path):
    """What the fuzz suite relies on: a file of the project's format whose fields are wrong is
    one CheckpointError where it is read: load_checkpoint (predict, evaluate, export, plot)
    needs the model's fields and settings, read_checkpoint (train --resume) the run's fields."""
    from models.training.checkpoints import read_checkpoint

    path = damaged(tmp_path, damage)
    if damage not in RUN_DAMAGE:
        assert_one_line(load_checkpoint, path)
    if damage not in SETTINGS_DAMAGE:
        assert_one_line(read_checkpoint, path)


def test_an_authors_file_with_a_marker_of_the_wrong_type_is_not_theirs(tmp_path):
    torch.save({"state_dict": {**release_like_state(), "layerNorm.weight": torch.tensor(1.0)}},
               tmp_path / "theirs.tar")
    with pytest.raises(CheckpointError, match="neither a sincfb genre-classifier checkpoint"):
        load_checkpoint(tmp_path / "theirs.tar")
