"""Ship a trained classifier: ``torch.export`` (an ExportedProgram, ``.pt2``, for AOTInductor or
ExecuTorch) and ONNX (``.onnx``, for onnxruntime on any CPU) of the eval path.

Two graphs can be exported from a checkpoint (the trainer's, or the authors' released ``.tar``):

- the clip model (default): ``clips`` (batch, 1, clip_samples) float32 -> ``logits``
  (batch, classes), with a dynamic batch size;
- the song model (``song=True``, :class:`SongClassifier`): ``waveform`` (samples,) float32, a
  mono track at the checkpoint's sample rate of any length -> its clips as the checkpoint's
  framing cuts them (the paper's clips inside the song, or the authors' look-back frames) ->
  ``logits`` (clips, classes), ``mean_probability`` (classes,), ``vote_shares`` (classes,) and
  ``majority`` (the majority vote, ties broken as the checkpoint's recipe says).

The fused sinc banks lower to standard operators inside the export (:mod:`sincfb.lowering`:
BatchNorm folded into the filters, ``conv1d``, ReLU, an exact adaptive average pool). Each
export is checked against the eager model on random input before it is written, and the file
records what a user needs to run it (:func:`export_metadata`): ONNX as model metadata
(onnxruntime's ``get_modelmeta().custom_metadata_map``), torch.export as the extra file
``sincfb_metadata.json``. Files are written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..base.choices import DEFAULT_OPSET, EXPORT_FORMATS, TIE_BREAKS
from ..data.audio import Framing
from .onnx_predict import ONNX_IO

__all__ = ["ExportError", "SongClassifier", "export_classifier", "export_metadata",
           "read_torch_export_metadata", "METADATA_FILE"]

METADATA_FILE = "sincfb_metadata.json"       # the extra file of a torch.export archive
_SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}
# an exported graph must reproduce the eager logits to this relative error (float32 rounding,
# with BatchNorm folded and sums reordered, is ~1e-6)
_TOLERANCE = 1e-4


class ExportError(ValueError):
    """A checkpoint that cannot be exported as asked, or missing export packages."""


class SongClassifier(nn.Module):
    """A classifier of whole songs: waveform (samples,) -> ``(logits, mean_probability,
    vote_shares, majority)``, in operators that export with a dynamic number of samples.

    The clips are those of ``framing`` (:class:`models.data.audio.Framing`, scale included), so the
    export classifies exactly the clips ``mssincresnet predict`` does; ``majority`` follows
    :func:`models.evaluation.results.vote` (ties to the higher mean probability, or to the lowest class
    index with ``tie_break='lowest'``).
    """

    def __init__(self, model: nn.Module, framing: Framing, tie_break: str = "probability"):
        super().__init__()
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        self.model, self.framing, self.tie_break = model, framing, tie_break

    def clip_positions(self, num_samples) -> torch.Tensor:
        """(clips, clip_samples) sample indices of every clip; ``num_samples`` (past the end)
        marks a padding zero. ``num_samples`` may be symbolic (a dynamic export dimension)."""
        f = self.framing
        length = torch.scalar_tensor(num_samples, dtype=torch.int64)
        if f.lookback_samples is None:       # clip_starts: every start keeping the clip inside
            count = (length - f.clip_samples).clamp_min(0) // f.hop_samples + 1
        else:
            count = (length // f.hop_samples).clamp_min(1)
        # A data-dependent size, about which the exporters assume nothing: a size derived from
        # the input length would get the guard "at least 2 clips" and refuse short tracks.
        count = count.item()
        torch._check(count >= 1)
        starts = torch.arange(count) * f.hop_samples
        if f.lookback_samples is not None:   # the authors' frames, with Python's slice rules:
            first = starts - f.lookback_samples      # a negative start takes the song's tail
            starts = torch.where(first >= 0, first, (first + num_samples).clamp_min(0))
        positions = starts[:, None] + torch.arange(f.clip_samples)
        return torch.where(positions < num_samples, positions, num_samples)

    def clips(self, waveform: torch.Tensor) -> torch.Tensor:
        """The (clips, 1, clip_samples) clips of a (samples,) waveform, zero-padded, scaled."""
        padded = F.pad(waveform, (0, 1))                       # the zero that padding points at
        clips = padded[self.clip_positions(waveform.shape[0])]
        if self.framing.scale != 1.0:
            clips = clips * self.framing.scale
        return clips[:, None]

    def forward(self, waveform: torch.Tensor):
        """(samples,) -> logits (clips, C), mean probability (C,), vote shares (C,), majority
        (the winning class index, 0-d int64)."""
        logits = self.model(self.clips(waveform))
        probabilities = torch.softmax(logits.float(), dim=-1)
        classes = probabilities.shape[1]
        votes = (probabilities.argmax(1)[:, None] == torch.arange(classes)).sum(0)
        shares = votes.float() / probabilities.shape[0]
        mean = probabilities.double().mean(0)           # as the vote: in float64
        tied = votes == votes.max()
        if self.tie_break == "lowest":
            majority = tied.float().argmax()
        else:                                           # probabilities are >= 0: -1 drops a class
            majority = torch.where(tied, mean, -1.0).argmax()
        return logits, mean.float(), shares, majority


def export_metadata(state: dict, config, kind: str, fmt: str, opset: Optional[int]) -> dict:
    """``{key: str}`` recorded in an exported file: versions, opset, classes (JSON, output
    order), the audio contract (sample rate, clip length, hop, look-back, scale, the fixed
    duration files are stretched to), the vote, and the model card's one-line summary."""
    import sincfb

    from ..training.card import checkpoint_summary

    framing = config.framing
    if kind == "song":
        contract = f"waveform (samples,) float32, mono at {config.sample_rate} Hz"
        if config.fixed_samples:
            contract += f", stretched to {config.fixed_samples} samples"
    else:
        contract = f"clips (batch, 1, {config.clip_samples}) float32"
    return {
        "format": "sincfb-genre-export/1", "kind": kind, "export_format": fmt,
        "sincfb.version": sincfb.__version__, "torch.version": torch.__version__,
        "onnx.opset": "" if opset is None else str(opset),
        "classes": json.dumps(list(state["classes"])), "sample_rate": str(config.sample_rate),
        "clip_samples": str(config.clip_samples), "hop_samples": str(config.hop_samples),
        "lookback_samples": "" if framing.lookback_samples is None
                            else str(framing.lookback_samples),
        "audio_scale": repr(float(framing.scale)),
        "fixed_samples": "" if config.fixed_samples is None else str(config.fixed_samples),
        "vote": config.vote, "tie_break": config.tie_break,
        "summary": checkpoint_summary(state) or "", "input": contract,
        "outputs": ("logits, mean_probability, vote_shares, majority" if kind == "song"
                    else "logits"),
    }


def _relative_error(got, want) -> float:
    got, want = torch.as_tensor(got).double(), torch.as_tensor(want).double()
    return float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want))


def _inputs(config, song: bool, seed: int, extra: int):
    """Random input: ``2 + extra`` clips, or a waveform of a few clips whose length is no
    multiple of the hop. The traced example has ``extra=0`` (a batch of 1 would be
    specialised), the check a larger one, so that it covers the dynamic dimension too."""
    generator = torch.Generator().manual_seed(seed)
    if song:
        samples = config.clip_samples + (3 + extra) * config.hop_samples + 7
        return (torch.randn(samples, generator=generator),)
    return (torch.randn(2 + extra, 1, config.clip_samples, generator=generator),)


def _checked(run, module: nn.Module, inputs, what: str) -> float:
    """Relative error of the exported graph's logits against the eager module's on ``inputs``
    (fresh ones, of another size than the traced example); ``ExportError`` beyond the float32
    tolerance."""
    with torch.no_grad():
        want = module(*inputs)
    want = want[0] if isinstance(want, tuple) else want
    got = run(*inputs)
    error = _relative_error(got, want)
    if not error <= _TOLERANCE:
        raise ExportError(f"the {what} export does not reproduce the eager logits (relative "
                          f"error {error:.2e} > {_TOLERANCE:g}); please report this")
    return error


def _export_onnx(module, inputs, dynamic, check, out: Path, values: dict, opset: int) -> float:
    """Export to ONNX with ``values`` as model metadata, check it in onnxruntime, write it."""
    try:
        import onnx
        import onnxruntime
    except ModuleNotFoundError as error:
        raise ExportError(f"ONNX export needs onnx, onnxscript and onnxruntime ({error}): pip "
                          "install 'sincfb[export]'") from None
    from ..base.fileio import atomic_write_bytes

    names = [list(n) for n in ONNX_IO["song" if isinstance(module, SongClassifier) else "clips"]]
    try:
        program = torch.onnx.export(module, inputs, dynamic_shapes=dynamic, opset_version=opset,
                                    input_names=names[0], output_names=names[1], verbose=False)
    except ModuleNotFoundError as error:         # onnxscript, imported by the exporter itself
        raise ExportError(f"ONNX export needs onnxscript ({error}): pip install "
                          "'sincfb[export]'") from None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, values)
    data = proto.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])

    def run(*arrays):
        return session.run(["logits"], {names[0][0]: arrays[0].numpy()})[0]

    error = _checked(run, module, check, "ONNX")
    atomic_write_bytes(out, data)
    return error


def _export_program(module, inputs, dynamic, check, out: Path, values: dict) -> float:
    """``torch.export`` with ``values`` as an extra file, check the program, write it."""
    from ..base.fileio import atomic_open

    program = torch.export.export(module, inputs, dynamic_shapes=dynamic)

    def run(*tensors):
        with torch.no_grad():
            result = program.module()(*tensors)
        return result[0] if isinstance(result, tuple) else result

    error = _checked(run, module, check, "torch.export")
    with atomic_open(out, "wb") as handle:
        torch.export.save(program, handle, extra_files={METADATA_FILE: json.dumps(values)})
    return error


def default_output(checkpoint, fmt: str, song: bool) -> Path:
    """Beside the checkpoint: ``best.onnx``, ``best-song.onnx``, ``best.pt2`` ..."""
    path = Path(checkpoint)
    return path.with_name(path.stem + ("-song" if song else "") + _SUFFIXES[fmt])


def export_classifier(checkpoint, out=None, format: str = "onnx", song: bool = False,
                      opset: int = DEFAULT_OPSET, classes: Optional[list] = None) -> dict:
    """Export a checkpoint's eval path; returns ``{'path', 'metadata', 'relative_error'}``.

    Args:
        checkpoint: a checkpoint written by training, or the authors' released ``.tar``.
        out: the file to write (default: beside the checkpoint, :func:`default_output`).
        format: 'onnx' (needs ``pip install 'sincfb[export]'``) or 'torch-export'.
        song: export :class:`SongClassifier` (waveform in, vote out) instead of the clip model.
        opset: the ONNX opset (ignored for torch-export).
        classes: class names of an authors' checkpoint, in output order (default: GTZAN's,
            assumed, as ``predict`` does).

    The exported logits are compared with the eager model's on fresh random input of another
    batch size (or length) than the traced one; ``relative_error`` is that comparison, and a
    graph beyond float32 tolerance is refused (``ExportError``) rather than written. ``note``
    says when the class order of an authors' checkpoint was assumed.
    """
    from sincfb import filterbanks

    from ..training.authors import class_order_note
    from ..training.checkpoints import load_checkpoint
    from ..training.config import TrainConfig

    if format not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    model, state = load_checkpoint(checkpoint, "cpu", class_names=classes)
    for _, bank in filterbanks(model):
        bank.set_backend("reference")     # the eager side of the check: the oracle, no build
    config = TrainConfig.from_dict(state["config"])
    module = SongClassifier(model, config.framing, config.tie_break) if song else model
    module.eval()
    out = Path(out) if out else default_output(checkpoint, format, song)
    values = export_metadata(state, config, "song" if song else "clips", format,
                             opset if format == "onnx" else None)
    inputs, check = _inputs(config, song, 0, 0), _inputs(config, song, 1, 2)
    dynamic = ({0: torch.export.Dim("samples" if song else "batch", min=1)},)
    if format == "onnx":
        error = _export_onnx(module, inputs, dynamic, check, out, values, opset)
    else:
        error = _export_program(module, inputs, dynamic, check, out, values)
    return {"path": out, "metadata": values, "relative_error": error,
            "note": class_order_note(state)}


def read_torch_export_metadata(path) -> dict:
    """The metadata of a ``.pt2`` written by :func:`export_classifier`."""
    extra = {METADATA_FILE: ""}
    torch.export.load(path, extra_files=extra)
    return json.loads(extra[METADATA_FILE])
