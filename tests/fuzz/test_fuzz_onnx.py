"""Fuzzing ``predict --onnx``: the reader of exported models (``load_onnx_classifier``) and the
classification that follows, on damaged model files and damaged metadata.

Exporting the real network takes about 40 s on a loaded 2-core machine, too long for the
default run's fuzz budget, so the graph here is a small stand-in with the exported clip model's
contract (input ``clips`` (batch, 1, clip_samples) float32, output ``logits`` (batch, classes),
a dynamic batch, opset 18: what ``models.export`` writes), carrying the metadata written by the
real writer, :func:`models.export.export_metadata`. tests/models/inference/test_export.py runs the real
export end to end. The reader must give a classifier or one ``ValueError`` line naming the file;
classifying with what it accepts must not raise anything but such a line.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from models.inference.onnx_predict import classify_onnx, load_onnx_classifier  # noqa: E402
from tests.fuzz.support import (assert_one_line_naming, fuzz_settings, hang_guard,  # noqa: E402
                                mutated)

pytestmark = pytest.mark.fuzz

_SCRATCH = tempfile.TemporaryDirectory(prefix="sincfb-fuzz-onnx-")
SCRATCH = Path(_SCRATCH.name)
CLASSES = ["calm", "loud", "odd"]
CLIP = 800


@functools.lru_cache(maxsize=None)
def honest_metadata() -> dict:
    """What ``mssincresnet export`` records for a clip model of the compact recipe at 8 kHz."""
    from models.training.config import TrainConfig
    from models.inference.export import export_metadata

    config = TrainConfig(sample_rate=8000, clip_seconds=CLIP / 8000, hop_seconds=0.05)
    return export_metadata({"classes": CLASSES}, config, "clips", "onnx", 18)


def stand_in_model(metadata: dict, clip: int = CLIP) -> bytes:
    """logits = mean over time of the clip x a (1, classes) weight: the exported contract."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.array([[1.0, -1.0, 0.5]], dtype=np.float32), "weight")
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    nodes = [helper.make_node("ReduceMean", ["clips", "axes"], ["mean"], keepdims=0),
             helper.make_node("MatMul", ["mean", "weight"], ["logits"])]
    graph = helper.make_graph(
        nodes, "stand_in", [helper.make_tensor_value_info("clips", TensorProto.FLOAT,
                                                          ["batch", 1, clip])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(CLASSES)])],
        [weight, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def song() -> Path:
    path = SCRATCH / "song.wav"
    t = np.arange(4000) / 8000
    # a positive offset: every clip's mean is > 0, so the stand-in's logits rank calm first
    sf.write(path, (0.2 + 0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 8000)
    return path


def check_model_file(data: bytes) -> None:
    path = SCRATCH / "hostile.onnx"
    path.write_bytes(data)
    with hang_guard():
        try:
            classifier = load_onnx_classifier(path, threads=1)
        except ValueError as error:
            assert_one_line_naming(error, path)
            return
        try:
            results = classify_onnx([song()], classifier, batch_size=4)
        except ValueError as error:
            assert_one_line_naming(error, path)
            return
    assert len(results) == 1
    assert results[0].ok, results[0].error
    assert results[0].genre in classifier.classes


def test_the_stand_in_classifies():
    """The honest stand-in loads and classifies: the fuzz tests start from a working model."""
    path = SCRATCH / "honest.onnx"
    path.write_bytes(stand_in_model(honest_metadata()))
    (result,) = classify_onnx([song()], load_onnx_classifier(path))
    # 4000 samples, clips of 800 every 400: starts 0, 400, ..., 3200
    assert result.ok and result.genre == "calm" and result.clips == 9


META_VALUES = st.sampled_from(("", "0", "-1", "1", "abc", "1e400", "nan", "inf", "[]", "[1]",
                               '["a"]', '["a\\nb"]', "{}", "2147483648", str(10 ** 12),
                               "clips", "song", "majority", "mean", "lowest", "[" * 5000)) \
    | st.text(max_size=20)


@st.composite
def damaged_metadata(draw) -> bytes:
    meta = dict(honest_metadata())
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(meta)))
        if draw(st.integers(0, 4)) == 0:
            del meta[key]
        else:
            meta[key] = draw(META_VALUES)
    clip = draw(st.sampled_from((CLIP, CLIP + 1)))
    return stand_in_model(meta, clip)


@fuzz_settings(40, 3000)
@given(damaged_metadata())
@example(stand_in_model({**honest_metadata(), "clip_samples": str(10 ** 12)}))   # a 4 TB clip
@example(stand_in_model({**honest_metadata(), "fixed_samples": str(10 ** 12)}))
@example(stand_in_model({**honest_metadata(), "sample_rate": "1"}))
@example(stand_in_model({k: v for k, v in honest_metadata().items() if k != "hop_samples"}))
@example(stand_in_model({**honest_metadata(), "classes": "[" * 5000}))
@example(stand_in_model(honest_metadata(), CLIP + 1))        # graph and metadata disagree
def test_damaged_onnx_metadata(data):
    check_model_file(data)


# found by the deep run: onnxruntime decodes names and metadata as UTF-8 when they are read
NOT_UTF8 = {"input name": (b"\x05clips", b"\x05\x80lips"), "metadata": (b"majority", b"\x80ajority")}


@fuzz_settings(40, 3000)
@given(st.data())
@example("input name")
@example("metadata")
def test_damaged_onnx_bytes(data):
    honest = stand_in_model(honest_metadata())
    if isinstance(data, str):
        old, new = NOT_UTF8[data]
        assert old in honest
        check_model_file(honest.replace(old, new))
    else:
        check_model_file(data.draw(mutated(honest, header=len(honest))))


def test_predict_onnx_on_a_folder_skips_hostile_files_and_classifies_the_songs(tmp_path):
    from tests.fuzz.support import song_folder_with_hostile_files
    from tests.fuzz.test_fuzz_checkpoints import check_folder_results, predict_folder

    model = tmp_path / "model.onnx"
    model.write_bytes(stand_in_model(honest_metadata()))
    good, hostile = song_folder_with_hostile_files(tmp_path / "music")
    status, payload, stderr = predict_folder(["predict", str(tmp_path / "music"), "--onnx",
                                              str(model)])
    check_folder_results(status, payload, stderr, good, hostile)
    assert {r["genre"] for r in payload["results"]} == {"calm"}     # positive means: see song()
