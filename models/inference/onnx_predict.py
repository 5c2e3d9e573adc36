"""Classify audio files with an exported ONNX model through onnxruntime, without torch.

``mssincresnet predict --onnx model.onnx FILES`` and :func:`classify_onnx` give the results
``predict --checkpoint`` gives (same table, CSV and JSON), from a file written by
``mssincresnet export``: its metadata says the classes, sample rate, clip framing, the fixed
duration files are stretched to, and the vote. Decoding is soundfile's, resampling
:func:`models.data.audio.sinc_resample` (torchaudio's filter in numpy), voting
:func:`models.evaluation.results.vote`: this module imports neither torch nor sincfb, only numpy,
soundfile and onnxruntime (a test runs it with torch made unimportable).

A clip model is run on batches of clips; a song model (``export --song``) on the whole track at
once, and its in-graph vote decides (memory grows with the track: about 0.1 GB per clip at the
paper's sizes, so prefer the clip model for long recordings).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..base.choices import MAX_CLIP_SAMPLES, MAX_FIXED_SAMPLES, SAMPLE_RATES, TIE_BREAKS, VOTES
from ..base.messages import error_detail
from ..data.audio import Framing, load_audio
from ..evaluation.results import (FileResult, check_predict_arguments, classify_paths,
                                  file_result, vote)

__all__ = ["OnnxClassifier", "ONNX_IO", "load_onnx_classifier", "classify_onnx"]

#: The inputs and outputs of an exported model, by kind: what ``mssincresnet export`` names them
#: and what this module feeds and reads.
ONNX_IO = {"clips": (("clips",), ("logits",)),
           "song": (("waveform",), ("logits", "mean_probability", "vote_shares", "majority"))}


@dataclass
class OnnxClassifier:
    """An exported model loaded in onnxruntime, with the recipe its metadata records."""

    session: object                 # onnxruntime.InferenceSession
    kind: str                       # 'clips' or 'song'
    classes: list
    sample_rate: int
    framing: Framing
    fixed_samples: Optional[int]
    vote: str
    tie_break: str
    summary: str
    path: str

    def run(self, outputs, feeds: dict) -> list:
        """``session.run``; a model that fails on its own inputs (a damaged graph that still
        loaded) is a ``ValueError`` naming the model, not onnxruntime's exception."""
        try:
            return self.session.run(outputs, feeds)
        except Exception as error:          # onnxruntime raises its own types
            raise ValueError(f"{self.path}: the ONNX model fails to run "
                             f"({error_detail(error)})") from None

    def song_decision(self, track: np.ndarray, vote_method: str, batch_size: int):
        """``(winner, vote_shares, mean_probabilities, clips)`` of one decoded track."""
        if self.kind == "song":
            logits, mean, shares, majority = self.run(
                None, {"waveform": np.ascontiguousarray(track, dtype=np.float32)})
            winner = int(majority) if vote_method == "majority" else int(np.argmax(mean))
            return winner, shares.astype(np.float64), mean.astype(np.float64), len(logits)
        count = self.framing.count(len(track))
        probabilities = []
        for first in range(0, count, batch_size):
            clips = self.framing.clip_array(track, range(first, min(count, first + batch_size)))
            (logits,) = self.run(["logits"], {"clips": clips})
            probabilities.append(_softmax(logits))
        winner, _, shares, mean = vote(np.concatenate(probabilities), vote_method, self.tie_break)
        return winner, shares, mean, count


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over classes in float32, as the torch path computes it."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _optional_int(text: str) -> Optional[int]:
    return int(text) if text else None


def load_onnx_classifier(path, threads: Optional[int] = None) -> OnnxClassifier:
    """Open a model written by ``mssincresnet export`` (format onnx) in onnxruntime on the CPU;
    ``threads``: onnxruntime's intra-op threads (default: its own choice). ``ValueError`` for a
    missing file, a file that is not such a model, or onnxruntime missing."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise ValueError("--onnx needs onnxruntime: pip install onnxruntime (or "
                         "'sincfb[export]')") from None
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such ONNX model")
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    try:
        # onnxruntime prints "EP Error ..." on stdout before it raises for a damaged model
        with contextlib.redirect_stdout(io.StringIO()):
            session = onnxruntime.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
    except Exception as error:    # onnxruntime raises its own types for unreadable models
        raise ValueError(f"{path}: not a readable ONNX model ({error_detail(error)})") from None
    try:
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("format") != "sincfb-genre-export/1":
            raise ValueError(f"{path}: an ONNX model, but not one written by 'mssincresnet "
                             "export' (its metadata lacks the classes and audio settings)")
        recipe = _recipe(meta, path)
        _check_graph(session, recipe, path)
    except UnicodeDecodeError as error:     # names or metadata damaged into invalid UTF-8
        raise ValueError(f"{path}: a damaged ONNX model (its names or metadata are not UTF-8 "
                         f"text: byte 0x{error.object[error.start]:02x})") from None
    framing = Framing(recipe["clip_samples"], recipe["hop_samples"], recipe["lookback_samples"],
                      recipe["audio_scale"])
    summary = "".join(c if c.isprintable() else " " for c in meta.get("summary", "")[:2000])
    return OnnxClassifier(session, recipe["kind"], recipe["classes"], recipe["sample_rate"],
                          framing, recipe["fixed_samples"], recipe["vote"], recipe["tie_break"],
                          summary, str(path))


def _recipe(meta: dict, path: Path) -> dict:
    """The recipe an exported model's metadata records, parsed and checked: every value comes
    from the file and sizes what this module allocates (a clip of ``clip_samples``, a track of
    ``fixed_samples``), so each must lie in the range the trainer allows."""
    try:
        recipe = {"kind": meta["kind"], "classes": json.loads(meta["classes"]),
                  "sample_rate": int(meta["sample_rate"]),
                  "clip_samples": int(meta["clip_samples"]),
                  "hop_samples": int(meta["hop_samples"]),
                  "lookback_samples": _optional_int(meta["lookback_samples"]),
                  "audio_scale": float(meta["audio_scale"]),
                  "fixed_samples": _optional_int(meta["fixed_samples"]), "vote": meta["vote"],
                  "tie_break": meta["tie_break"]}
    except (KeyError, ValueError, RecursionError) as error:
        raise ValueError(f"{path}: its sincfb metadata is incomplete or damaged "
                         f"({type(error).__name__}: {str(error)[:80]})") from None
    r = recipe
    valid = {"kind": r["kind"] in ONNX_IO,
             "classes": isinstance(r["classes"], list) and len(r["classes"]) > 0 and all(
                 isinstance(c, str) and 0 < len(c) <= 200 and c.isprintable()
                 for c in r["classes"]),
             "sample_rate": SAMPLE_RATES[0] <= r["sample_rate"] <= SAMPLE_RATES[1],
             "clip_samples": 1 <= r["clip_samples"] <= MAX_CLIP_SAMPLES,
             "hop_samples": r["hop_samples"] >= 1,
             "lookback_samples": r["lookback_samples"] is None
                                 or 0 <= r["lookback_samples"] < r["clip_samples"],
             "audio_scale": math.isfinite(r["audio_scale"]) and r["audio_scale"] > 0,
             "fixed_samples": r["fixed_samples"] is None
                              or 1 <= r["fixed_samples"] <= MAX_FIXED_SAMPLES,
             "vote": r["vote"] in VOTES, "tie_break": r["tie_break"] in TIE_BREAKS}
    for key, ok in valid.items():
        if not ok:
            raise ValueError(f"{path}: its metadata holds an invalid {key} "
                             f"({str(meta.get(key))[:60]!r})")
    return recipe


def _check_graph(session, recipe: dict, path: Path) -> None:
    """``ValueError`` unless the graph has the inputs and outputs of its kind, and, where its
    shapes are fixed, the clip length and class count its metadata records."""
    inputs, outputs = ONNX_IO[recipe["kind"]]
    graph_inputs = {i.name: i.shape for i in session.get_inputs()}
    graph_outputs = {o.name: o.shape for o in session.get_outputs()}
    if list(graph_inputs) != list(inputs) or not set(outputs) <= set(graph_outputs):
        raise ValueError(f"{path}: a {recipe['kind']} model takes {list(inputs)} and gives "
                         f"{list(outputs)}; this one takes {list(graph_inputs)[:4]} and gives "
                         f"{list(graph_outputs)[:4]}")
    fixed = {"clips": (graph_inputs[inputs[0]], -1, recipe["clip_samples"], "clip length"),
             "logits": (graph_outputs["logits"], -1, len(recipe["classes"]), "class count")}
    for name, (shape, axis, want, what) in fixed.items():
        if name == "clips" and recipe["kind"] != "clips":
            continue
        got = shape[axis] if shape else None
        if isinstance(got, int) and got != want:
            raise ValueError(f"{path}: its metadata says {what} {want}, its graph {got}")


def classify_onnx(paths, model, batch_size: int = 32, vote: Optional[str] = None,
                  progress: bool = False) -> list[FileResult]:
    """:func:`models.inference.predict.classify` with an exported ONNX model: ``model`` is its path or an
    :class:`OnnxClassifier`; ``batch_size`` clips per run of a clip model; ``vote`` 'majority'
    or 'mean' (default: the recorded one). One :class:`FileResult` per file, then the problems."""
    check_predict_arguments(batch_size, vote)
    classifier = model if isinstance(model, OnnxClassifier) else load_onnx_classifier(model)
    method = vote or classifier.vote

    def decode(path):
        return load_audio(path, classifier.sample_rate, fixed_samples=classifier.fixed_samples,
                          resampler="numpy")

    def classify_file(path) -> FileResult:
        return file_result(path, decode,
                           lambda track: classifier.song_decision(track, method, batch_size),
                           classifier.classes)

    return classify_paths(paths, classify_file, progress)
