"""``mssincresnet export``: a checkpoint as an ONNX model or a torch.export archive."""
from __future__ import annotations

from ..base.messages import note
from ..evaluation.results import print_summary

__all__ = ["command_export"]


def command_export(args) -> int:
    """``mssincresnet export``: write the file, say what it holds and how well it matches."""
    from ..inference.export import export_classifier

    result = export_classifier(args.checkpoint, args.out, args.format, args.song, args.opset,
                               args.classes)
    values = result["metadata"]
    note(result["note"])
    print_summary(values["summary"] or None)
    print(f"wrote {result['path']}: {values['kind']} model, input {values['input']}; "
          f"outputs {values['outputs']}; logits match eager PyTorch to a relative "
          f"{result['relative_error']:.1e}")
    return 0
