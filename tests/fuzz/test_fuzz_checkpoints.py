"""Fuzzing the checkpoint readers through the public API: ``load_checkpoint`` (predict,
evaluate, export, plot), ``read_checkpoint`` (train --resume) and ``load_classifier``.

The honest files come from the real writers (the trainer's ``save``; the authors' layout from the
stand-in of their network, saved as their main.py saves it, or as a bare state dict). Hypothesis
damages them: keys removed or replaced by values of any type, tensors of other shapes and dtypes,
stride-0 tensors that claim 2^30 elements over one stored value, settings that describe a larger
model, and the bytes of the zip itself (cut at any offset, overwritten). Every reader must
return a usable model or raise a one-line :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, strategies as st

import models.training.authors
from models.base.datafiles import CheckpointError
from models.training.checkpoints import load_checkpoint, read_checkpoint
from models.cli import main
from models.data.readers.synthetic import synthetic_tracklist
from models.inference.predict import load_classifier
from models.training.runs import RunFolderError, evaluation_songs, splits_from_checkpoint
from tests.fuzz.support import (assert_clean_cli, assert_one_line_naming, fuzz_settings,
                                hang_guard, mutated)

pytestmark = pytest.mark.fuzz

_SCRATCH = tempfile.TemporaryDirectory(prefix="sincfb-fuzz-checkpoints-")


def junk_tensor(kind: str) -> torch.Tensor:
    return {"scalar": torch.zeros(()), "empty": torch.zeros(0), "int": torch.arange(3),
            "bool": torch.ones(2, dtype=torch.bool), "complex": torch.ones(2, dtype=torch.cfloat),
            "stride0": torch.zeros(1).expand(2 ** 30)}[kind]


JUNK = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats()
        | st.text(max_size=12) | st.lists(st.integers(), max_size=3) | st.just({})
        | st.sampled_from(("scalar", "empty", "int", "bool", "complex", "stride0"))
        .map(junk_tensor))


@st.composite
def changed_tensor(draw, tensor: torch.Tensor):
    """``tensor`` with another shape or dtype, a stride-0 giant, or something else entirely."""
    kind = draw(st.sampled_from(("shape", "dtype", "giant", "junk")))
    if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
        kind = "junk"       # already a giant: another shape or dtype would materialise it here
    if kind == "shape" and tensor.dim():
        shape = list(tensor.shape)
        axis = draw(st.integers(0, len(shape) - 1))
        shape[axis] = max(0, shape[axis] + draw(st.sampled_from((-1, 1, 7))))
        return torch.zeros(shape, dtype=tensor.dtype)
    if kind == "dtype":
        dtype = draw(st.sampled_from((torch.float64, torch.float16, torch.bfloat16, torch.int64,
                                      torch.uint8, torch.bool, torch.complex64)))
        return tensor.to(dtype)
    if kind == "giant":
        return torch.zeros((1,) * max(1, tensor.dim())).expand(
            *tensor.shape[:-1] if tensor.dim() else (), 2 ** 30)
    return draw(JUNK)


@st.composite
def damaged_state(draw, state: dict) -> dict:
    state = dict(state)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(state)))
        action = draw(st.sampled_from(("delete", "change", "add")))
        if action == "delete":
            state.pop(key, None)
        elif action == "change" and key in state:
            state[key] = draw(changed_tensor(state[key]) if isinstance(state[key], torch.Tensor)
                              else JUNK)
        else:
            state[draw(st.text(min_size=1, max_size=12))] = draw(JUNK)
    return state


SIZE_SETTINGS = st.sampled_from((("hidden", 10 ** 9), ("num_filters", 10 ** 7),
                                 ("pool_bins", 10 ** 8), ("kernel_sizes", (31, 63, 10 ** 6 + 1)),
                                 ("no_such_setting", 1), ("kernel_sizes", "abc")))


@st.composite
def damaged_record(draw, record: dict) -> dict:
    """The trainer's record with one to three parts damaged: top-level entries, settings
    (including model settings that describe a far larger model), weights."""
    record = dict(record)
    for _ in range(draw(st.integers(1, 3))):
        part = draw(st.sampled_from(("top", "config", "model_kwargs", "state")))
        if part == "top":
            key = draw(st.sampled_from(("format", "config", "classes", "model_state", "card",
                                        "epoch", "splits", "split_names", "split_spec")))
            if draw(st.booleans()):
                record.pop(key, None)
            else:
                record[key] = draw(JUNK | st.lists(st.text(max_size=300), max_size=3))
        elif part == "config" and isinstance(record.get("config"), dict):
            field = draw(st.sampled_from(sorted(record["config"]) + ["no_such_field"]))
            record["config"] = {**record["config"], field: draw(JUNK)}
        elif part == "model_kwargs" and isinstance(record.get("config"), dict) and \
                isinstance(record["config"].get("model_kwargs"), dict):
            key, value = draw(SIZE_SETTINGS)
            config = record["config"]
            record["config"] = {**config, "model_kwargs": {**config["model_kwargs"], key: value}}
        elif part == "state" and isinstance(record.get("model_state"), dict):
            record["model_state"] = draw(damaged_state(record["model_state"]))
    return record


def saved(obj, name: str = "hostile.pt") -> Path:
    path = Path(_SCRATCH.name) / name
    torch.save(obj, path)
    return path


def check_readers(path: Path, readers) -> None:
    """Each reader loads ``path`` or raises a one-line CheckpointError naming it."""
    for read in readers:
        with hang_guard():
            try:
                read(path)
            except CheckpointError as error:
                assert_one_line_naming(error, path)
                # an allocation the file cannot back, refused by the allocator (the deep run
                # limits the process's memory), is a failure of the guards, not a clean error
                assert "allocate" not in str(error), str(error)


def evaluated_songs(path, strict: bool = False):
    """What ``evaluate`` and ``train --resume`` read: the checkpoint, then its splits in a
    corpus of its songs. A split naming songs this corpus lacks is a one-line RunFolderError
    (raised when ``strict``)."""
    state = load_checkpoint(path)[1]
    try:
        evaluation_songs(state, CORPUS_NAMES, "test", same_dataset=True)
        splits_from_checkpoint(state, CORPUS_NAMES, str(path))
    except RunFolderError as error:
        assert "\n" not in str(error)
        if strict:
            raise


# The track names of the honest checkpoint's corpus (tests/fuzz/conftest.py)
CORPUS_NAMES = [track.name for track in synthetic_tracklist(songs_per_genre=3).tracks]
PROJECT_READERS = (load_checkpoint, read_checkpoint, lambda p: load_classifier(p, "cpu"),
                   evaluated_songs)


@pytest.fixture(scope="module")
def honest_record(honest_checkpoint):
    return torch.load(honest_checkpoint, map_location="cpu", weights_only=True)


@fuzz_settings(4, 400)
@given(data=st.data())
def test_damaged_project_checkpoints(honest_record, data):
    record = data.draw(damaged_record(honest_record))
    check_readers(saved(record), PROJECT_READERS)


RESUME_KEYS = ("optimizer", "epoch", "step", "partial", "history", "best", "torch_rng",
               "best_scores")


@st.composite
def damaged_resume_record(draw, record: dict) -> dict:
    """The trainer's record with what resuming reads besides the weights damaged: entries
    removed or replaced, optimizer groups and the random state changed."""
    record = dict(record)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(RESUME_KEYS))
        value = record.get(key)
        if isinstance(value, dict) and value and draw(st.booleans()):
            inner = draw(st.sampled_from(sorted(value, key=str)))
            record[key] = {**value, inner: draw(JUNK | st.lists(st.just({}), max_size=2))}
        elif isinstance(value, torch.Tensor) and draw(st.booleans()):
            record[key] = draw(changed_tensor(value))
        elif draw(st.integers(0, 3)) == 0:
            record.pop(key, None)
        else:
            record[key] = draw(JUNK)
    return record


RESUME_REGRESSIONS = {
    "rng": {"torch_rng": torch.zeros(10, dtype=torch.uint8)},     # set_rng_state: RuntimeError
    "optimizer": {"optimizer": {"state": None, "param_groups": []}},  # torch: AttributeError
}


@fuzz_settings(4, 300)
@given(data=st.data())
@example(data="rng")
@example(data="optimizer")
def test_damaged_checkpoints_resumed(honest_trainer, honest_record, data):
    """``train --resume``'s reader: :meth:`Trainer.resume` continues or refuses in one line."""
    if isinstance(data, str):
        record = {**honest_record, **RESUME_REGRESSIONS[data]}
    else:
        record = data.draw(damaged_resume_record(honest_record))
    path = saved(record)
    with hang_guard():
        try:
            honest_trainer.resume(path)
        except CheckpointError as error:
            assert_one_line_naming(error, path)
        else:
            assert honest_trainer.epoch == record["epoch"]


@pytest.mark.parametrize("change", [
    ("config", {"hidden": 10 ** 9}),                        # a 10 TB head before any check
    ("config", {"no_such_setting": 1}),                     # was a TypeError from the model
    ("config", {"clip_seconds": "3"}),
    ("state", "layerNorm.weight"),                          # stride 0: 2^30 elements over 4 bytes
    ("top", "config"), ("top", "classes"), ("card", {"summary": "two\nlines"}),
    ("splits", {"train": [], "valid": [], "test": [10 ** 6]}),   # beyond the corpus
    ("splits", {"train": [-1], "valid": [], "test": []}),
])
def test_damaged_project_checkpoint_regressions(honest_record, change):
    part, what = change
    record = copy.copy(honest_record)
    if part == "config":
        record["config"] = {**record["config"]}
        if "hidden" in what or "no_such_setting" in what:
            record["config"]["model_kwargs"] = {**record["config"]["model_kwargs"], **what}
        else:
            record["config"].update(what)
    elif part == "state":
        giant = torch.zeros(1, 1).expand(1, 2 ** 30)
        record["model_state"] = {**record["model_state"], what: giant}
    elif part == "top":
        del record[what]
    elif part == "splits":
        record["splits"], record["split_names"] = what, None
    else:
        record["card"] = what
    path = saved(record)
    if part == "card":
        assert "\n" not in load_classifier(path, "cpu").summary
        return
    if part == "splits" and min(what["train"] + what["test"]) >= 0:
        with pytest.raises(RunFolderError, match="beyond this dataset's 18 songs"):
            evaluated_songs(path, strict=True)
        return
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert_one_line_naming(info.value, path)


@contextlib.contextmanager
def authors_architecture(architecture):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models.training.authors, "RELEASED_ARCHITECTURE", architecture)
        yield


@fuzz_settings(4, 300)
@given(data=st.data(), wrapped=st.booleans())
@example(data=None, wrapped=False)
def test_damaged_authors_checkpoints(authors_checkpoint, data, wrapped):
    path, architecture = authors_checkpoint
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    if data is None:              # regression: fc.weight as a Python int (was AttributeError)
        state = {**theirs["state_dict"], "resnet.model.fc.weight": 10}
    else:
        state = data.draw(damaged_state(theirs["state_dict"]))
    hostile = saved({**theirs, "state_dict": state} if wrapped else state, "hostile.tar")
    with authors_architecture(architecture):
        check_readers(hostile, (load_checkpoint, lambda p: load_classifier(p, "cpu")))


@st.composite
def damaged_bytes(draw, data: bytes):
    """The zip's bytes damaged at its start (the pickle), its end (the central directory) or
    anywhere, or cut at any offset."""
    region = draw(st.sampled_from(("head", "tail", "cut")))
    if region == "cut":
        return data[:draw(st.integers(0, len(data) - 1))]
    span = 1 << 16
    if region == "head":
        return draw(mutated(data[:span], header=span)) + data[span:]
    return data[:-span] + draw(mutated(data[-span:], header=span))


@fuzz_settings(6, 300)
@given(data=st.data())
@example(data=None)     # found by the deep run: pickle's error on a 'P' opcode spans two lines
def test_damaged_checkpoint_bytes(honest_checkpoint, data):
    hostile = Path(_SCRATCH.name) / "hostile-bytes.pt"
    hostile.write_bytes(b"P" + bytes(64) if data is None
                        else data.draw(damaged_bytes(honest_checkpoint.read_bytes())))
    check_readers(hostile, (load_checkpoint, read_checkpoint))


def test_predict_on_hostile_checkpoints_prints_one_line(honest_record, tmp_path):
    """The command line: each hostile checkpoint ends ``predict`` with status 2 and one line."""
    import numpy as np
    import soundfile as sf

    song = tmp_path / "song.wav"
    sf.write(song, np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000)
    config = {**honest_record["config"],
              "model_kwargs": {**honest_record["config"]["model_kwargs"], "hidden": 10 ** 9}}
    hostiles = {"truncated.pt": io.BytesIO(), "settings.pt": {**honest_record, "config": config},
                "weights.pt": {**honest_record, "model_state": {"x": torch.zeros(1)}}}
    torch.save(honest_record, hostiles["truncated.pt"])
    for name, content in hostiles.items():
        path = tmp_path / name
        if isinstance(content, io.BytesIO):
            path.write_bytes(content.getvalue()[: len(content.getvalue()) // 2])
        else:
            torch.save(content, path)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = main(["predict", str(song), "--checkpoint", str(path), "--device", "cpu"])
        assert_clean_cli(stderr.getvalue(), status)
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        assert status == 2 and len(lines) == 1 and name in lines[0], stderr.getvalue()


def predict_folder(argv: list) -> tuple[int, dict, str]:
    """``mssincresnet predict ... --format json`` in this process: (status, JSON, stderr)."""
    import json

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        status = main(argv + ["--format", "json"])
    assert_clean_cli(stderr.getvalue(), status)
    return status, json.loads(stdout.getvalue()), stderr.getvalue()


def check_folder_results(status, payload, stderr, good, hostile) -> None:
    """Every song classified, every hostile file skipped and named, on stdout and stderr."""
    assert status == 0
    assert sorted(r["path"] for r in payload["results"]) == sorted(map(str, good))
    assert sorted(s["path"] for s in payload["skipped"]) == sorted(map(str, hostile))
    for skipped in payload["skipped"]:
        name = Path(skipped["path"]).name
        assert name in skipped["error"] and "\n" not in skipped["error"]
        assert sum(line.startswith("skipped:") and name in line
                   for line in stderr.splitlines()) == 1


def test_predict_on_a_folder_skips_hostile_files_and_classifies_the_songs(honest_checkpoint,
                                                                         tmp_path):
    from tests.fuzz.support import song_folder_with_hostile_files

    good, hostile = song_folder_with_hostile_files(tmp_path / "music")
    check_folder_results(*predict_folder(["predict", str(tmp_path / "music"), "--checkpoint",
                                          str(honest_checkpoint), "--device", "cpu"]),
                         good, hostile)


def test_a_storage_declaring_more_elements_than_its_record_is_refused_before_loading(tmp_path):
    """Found by the deep run (the process was killed at 23 GB for a 46 MB file): torch.load
    allocates the element count the zip's pickle declares before reading the record. A pickle
    whose count says 2^31 - 1 over a 4000-byte record is refused before torch.load runs."""
    import zipfile

    honest = io.BytesIO()
    torch.save({"weight": torch.ones(1000)}, honest)
    with zipfile.ZipFile(honest) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist()]
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as sink:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                # the storage's count (BININT2 1000 closing its persistent id's TUPLE), not
                # the shape's, becomes BININT 2^31 - 1
                assert data.count(b"M\xe8\x03t") == 1
                data = data.replace(b"M\xe8\x03t", b"J\xff\xff\xff\x7ft")
            sink.writestr(info, data)
    path = tmp_path / "inflated.pt"
    path.write_bytes(hostile.getvalue())
    for read in (load_checkpoint, read_checkpoint):
        with pytest.raises(CheckpointError, match="declares 2147483647 elements") as info:
            read(path)
        assert_one_line_naming(info.value, path)
