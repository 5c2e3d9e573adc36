"""Classify audio files with an exported ONNX model through onnxruntime, without torch.

``mssincresnet predict --onnx model.onnx FILES`` and :func:`classify_onnx` give the results
``predict --checkpoint`` gives (same table, CSV and JSON), from a file written by
``mssincresnet export``: its metadata says the classes, sample rate, clip framing, the fixed
duration files are stretched to, and the vote. Decoding is soundfile's, resampling
:func:`models.audio.sinc_resample` (torchaudio's filter in numpy), voting
:func:`models.results.vote`: this module imports neither torch nor sincfb, only numpy,
soundfile and onnxruntime (a test runs it with torch made unimportable).

A clip model is run on batches of clips; a song model (``export --song``) on the whole track at
once, and its in-graph vote decides (memory grows with the track: about 0.1 GB per clip at the
paper's sizes, so prefer the clip model for long recordings).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .audio import Framing, load_audio
from .results import (FileResult, check_predict_arguments, classify_paths, emit_results,
                      file_result, print_summary, vote)

__all__ = ["OnnxClassifier", "load_onnx_classifier", "classify_onnx", "command_predict_onnx"]


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

    def song_decision(self, track: np.ndarray, vote_method: str, batch_size: int):
        """``(winner, vote_shares, mean_probabilities, clips)`` of one decoded track."""
        if self.kind == "song":
            logits, mean, shares, majority = self.session.run(
                None, {"waveform": np.ascontiguousarray(track, dtype=np.float32)})
            winner = int(majority) if vote_method == "majority" else int(np.argmax(mean))
            return winner, shares.astype(np.float64), mean.astype(np.float64), len(logits)
        count = self.framing.count(len(track))
        probabilities = []
        for first in range(0, count, batch_size):
            clips = self.framing.clip_array(track, range(first, min(count, first + batch_size)))
            (logits,) = self.session.run(["logits"], {"clips": clips})
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
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])
    except Exception as error:    # onnxruntime raises its own types for unreadable models
        raise ValueError(f"{path}: not a readable ONNX model ({str(error).splitlines()[0]})") \
            from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("format") != "sincfb-genre-export/1":
        raise ValueError(f"{path}: an ONNX model, but not one written by 'mssincresnet export' "
                         "(its metadata lacks the classes and audio settings)")
    framing = Framing(int(meta["clip_samples"]), int(meta["hop_samples"]),
                      _optional_int(meta["lookback_samples"]), float(meta["audio_scale"]))
    return OnnxClassifier(session, meta["kind"], json.loads(meta["classes"]),
                          int(meta["sample_rate"]), framing, _optional_int(meta["fixed_samples"]),
                          meta["vote"], meta["tie_break"], meta.get("summary", ""), str(path))


def classify_onnx(paths, model, batch_size: int = 32, vote: Optional[str] = None,
                  progress: bool = False) -> list[FileResult]:
    """:func:`models.predict.classify` with an exported ONNX model: ``model`` is its path or an
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


def command_predict_onnx(args) -> int:
    """``mssincresnet predict --onnx``: as ``predict --checkpoint``, through onnxruntime."""
    check_predict_arguments(args.batch_size, args.vote, "--batch-size")
    if args.classes:
        raise ValueError("--classes names an authors' checkpoint's outputs; an exported model "
                         "records its classes (pass --classes to 'mssincresnet export')")
    classifier = load_onnx_classifier(args.onnx)
    print_summary(classifier.summary or None)
    results = classify_onnx(args.paths, classifier, args.batch_size, args.vote, progress=True)
    return emit_results(results, args.format, classifier.classes, str(args.onnx), None,
                        args.output)
