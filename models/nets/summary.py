"""Parameter counts of every model, paper and compact configurations, as a markdown table.

    python -m models.nets.summary [--out counts.md] [--num-classes 10]

Models are built on the meta device where they can be (no memory, no initialisation cost: the
paper-sized SincNet has over 200 M parameters); MelResNet's mel filterbank needs real tensors.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from .catalog import build_model, size_config
from .common import count_parameters
from .registry import registered_models

__all__ = ["PARTS", "parameter_counts", "summary_rows", "markdown_table", "main"]

#: (label, registry name, extra constructor arguments) of every row: the rows each model
#: registers (:func:`models.nets.registry.register_model`'s ``summary``), in listing order
VARIANTS = [(label, entry.name, extra) for entry in registered_models()
            for label, extra in entry.summary]

PARTS = ("front-end", "trunk", "head")


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts by the parts the model declares (:meth:`AudioClassifier.parts`):
    front-end, trunk and head. ``ValueError`` if a parameter is in no part or in two."""
    counts, seen = {}, {}
    for part, modules in model.parts().items():
        counts[part] = 0
        for module in modules:
            for name, p in module.named_parameters():
                if id(p) in seen:
                    raise ValueError(f"{type(model).__name__}: a parameter ({name}) is in both "
                                     f"{seen[id(p)]!r} and {part!r}")
                seen[id(p)] = part
                counts[part] += p.numel()
    missing = [name for name, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ValueError(f"{type(model).__name__}.parts() leaves out {missing[:5]}")
    return {part: counts.get(part, 0) for part in PARTS}


def _build(name: str, num_classes: int, kwargs: dict) -> nn.Module:
    try:
        with torch.device("meta"):
            return build_model(name, num_classes, **kwargs)
    except (RuntimeError, NotImplementedError):   # e.g. torchaudio's mel filterbank calls .item()
        return build_model(name, num_classes, **kwargs)


def summary_rows(num_classes: int = 10) -> list[dict]:
    """One row per (configuration, model variant): counts by group and in total."""
    rows = []
    for config in ("paper", "laptop", "compact"):
        for label, name, extra in VARIANTS:
            kwargs = {**(size_config(name, config) if config != "paper" else {}), **extra}
            model = _build(name, num_classes, kwargs)
            rows.append({"config": config, "model": label, **parameter_counts(model),
                         "total": count_parameters(model)})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as a GitHub-flavoured markdown table."""
    columns = ["config", "model", *PARTS, "total"]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * 4) + "|"]
    for row in rows:
        cells = [row[c] if isinstance(row[c], str) else f"{row[c]:,}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Print the table (and write it to ``--out`` if given)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--num-classes", type=int, default=10)
    args = parser.parse_args(argv)
    table = (f"Parameters with {args.num_classes} classes (paper: the defaults; laptop, compact: "
             "models.size_config).\n\n" + markdown_table(summary_rows(args.num_classes)))
    sys.stdout.write(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
