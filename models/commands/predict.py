"""``mssincresnet predict``: classify audio files with a checkpoint, or (``--onnx``) with an
exported model through onnxruntime, without torch."""
from __future__ import annotations

from ..base.messages import note
from ..evaluation.results import check_predict_arguments, emit_results, print_summary

__all__ = ["command_predict", "command_predict_onnx"]


def command_predict(args) -> int:
    """Classify, print or write the results, name skipped files on stderr (``--onnx``: with an
    exported model through onnxruntime, :func:`command_predict_onnx`).

    Exit status: 0 when at least one file was classified, 1 when none was; a usage error (missing
    checkpoint, bad batch size) raises ValueError, which ``main`` turns into status 2.
    """
    from ..inference.predict import classify, load_classifier

    check_predict_arguments(args.batch_size, args.vote, "--batch-size")
    classifier = load_classifier(args.checkpoint, args.device, classes=args.classes)
    note(classifier.note)
    print_summary(classifier.summary)
    results = classify(args.paths, classifier, args.batch_size, vote=args.vote, progress=True)
    return emit_results(results, args.format, classifier.classes, str(args.checkpoint),
                        classifier.note, args.output)


def command_predict_onnx(args) -> int:
    """``mssincresnet predict --onnx``: as ``predict --checkpoint``, through onnxruntime."""
    from ..inference.onnx_predict import classify_onnx, load_onnx_classifier

    check_predict_arguments(args.batch_size, args.vote, "--batch-size")
    if args.classes:
        raise ValueError("--classes names an authors' checkpoint's outputs; an exported model "
                         "records its classes (pass --classes to 'mssincresnet export')")
    classifier = load_onnx_classifier(args.onnx)
    print_summary(classifier.summary or None)
    results = classify_onnx(args.paths, classifier, args.batch_size, args.vote, progress=True)
    return emit_results(results, args.format, classifier.classes, str(args.onnx), None,
                        args.output)
