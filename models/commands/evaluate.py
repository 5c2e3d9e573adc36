"""``mssincresnet evaluate``: song-level evaluation of a checkpoint on a dataset."""
from __future__ import annotations

import json
from pathlib import Path

from ..base.messages import note, warn
from .workflow import open_corpus, report_failures, write_confusion_figure

__all__ = ["command_evaluate"]


def command_evaluate(args) -> int:
    """Evaluate a checkpoint on a dataset; print the scores and write a JSON report."""
    from ..training.authors import class_order_note
    from ..training.card import checkpoint_summary
    from ..evaluation.scoring import predict_songs, score
    from ..evaluation.results import print_summary
    from ..training.runs import evaluation_songs
    from ..training.checkpoints import load_checkpoint
    from ..training.config import TrainConfig
    from ..base.fileio import atomic_write_text
    from ..base.runtime import resolve_device

    device = resolve_device(args.device)
    _, state = load_checkpoint(args.checkpoint, "cpu", class_names=args.classes)
    config = TrainConfig.from_dict(state["config"])
    _, corpus = open_corpus(args, config)
    model, state = load_checkpoint(args.checkpoint, device, corpus.classes, args.classes)
    note(class_order_note(state))
    print_summary(checkpoint_summary(state))
    split, indices = evaluation_songs(state, corpus.names, args.split,
                                      same_dataset=state["dataset"] == corpus.name)
    if split == "unseen":
        warn(f"none of the checkpoint's test songs are in {corpus.name}; scoring its "
              f"{len(indices)} songs that the checkpoint did not train or validate on")
    if not len(indices):
        raise ValueError(f"no song of {corpus.name} is left to evaluate (all were used in training)")
    predictions = predict_songs(model, corpus, indices, config.framing, args.batch_size, device,
                                device.type == "cuda", args.vote or config.vote,
                                progress=not args.no_progress, tie_break=config.tie_break)
    report = score(predictions, corpus.classes)
    report.update(checkpoint=str(args.checkpoint), split=split, dataset=corpus.name,
                  recipe=config.recipe, class_order=state.get("class_order", "recorded"),
                  songs_detail=[p.as_dict(corpus.classes) for p in predictions],
                  skipped_files=corpus.failures)
    out = Path(args.out) if args.out else \
        Path(args.checkpoint).parent / f"evaluation-{corpus.name}-{split}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(report, indent=1))
    write_confusion_figure({"test": report}, out)
    print(f"{split}: {report['songs']} songs, song accuracy {report['song_accuracy']:.4f}, "
          f"clip accuracy {report['clip_accuracy']:.4f}, macro F1 {report['macro_f1']:.4f} -> "
          f"{out / 'evaluation.json'}")
    report_failures(corpus)
    return 0
