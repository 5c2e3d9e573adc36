"""MS-SincResNet and the baselines of its paper's Table 1, on the fused sinc filterbank of sincfb.

Every model takes clips of raw audio, (B, N) or (B, 1, N), and returns logits; each has
``representation(x)`` (the learned or fixed front-end output), ``embed(x)`` (the pooled feature
the classifier reads) and ``classify(features)``. Defaults are the paper's sizes;
``size_config(name, size)`` gives the ``compact`` (demos, tests) and ``laptop`` (real music on a
CPU) configurations; ``compact_config(name)`` is the compact one.

The package is built in floors; a module imports only from its own floor or lower ones
(``tests/test_import_layers.py`` checks it), from the bottom up:

1. ``base``: what every floor uses: the choices and bounds of settings, files written
   atomically, files read as data only, the words for the user (``note``, ``warn``), logs,
   progress bars, devices;
2. ``data``: audio decoding, one module per dataset layout (``data/readers``), splits, the
   decoded-audio cache, the training clips;
3. ``nets``: the networks (``nets/architectures``, each registering itself), the ResNet trunk,
   the model catalog and sizes, the parameter table;
4. ``evaluation``: song votes and scores, result files;
5. ``training``: settings and recipes, the trainer, checkpoints, the authors' checkpoints, run
   folders, model cards, the sinc cut-offs' treatment;
6. ``inference``: predicting with a checkpoint or an ONNX file, export, figures;
7. ``commands``: one module per command of ``mssincresnet``;
8. the top: ``cli`` (parsers and dispatch), this package's names, and the old module paths
   (``models.audio``, ``models.checkpoints`` ...), kept as aliases of the modules' new homes.

The names below are imported on first use, so that ``import models`` (and the command line's
``--help``) does not load torch.
"""
from .base.lazy import lazy_exports

_EXPORTS = {
    "AudioClassifier": "nets.common", "count_parameters": "nets.common",
    "MelResNet": "nets.architectures.melresnet", "MSSincResNet": "nets.architectures.mssincresnet",
    "SincResNet": "nets.architectures.mssincresnet", "SincNet": "nets.architectures.sincnet",
    "COMPACT": "nets.catalog", "MODELS": "nets.catalog", "build_model": "nets.catalog",
    "canonical_name": "nets.catalog", "compact_config": "nets.catalog", "LAPTOP": "nets.catalog",
    "SIZES": "nets.catalog", "size_config": "nets.catalog",
    "BackboneWeightsUnavailable": "nets.trunk", "ResNetTrunk": "nets.trunk",
    "trunk_output_size": "nets.trunk",
}

__all__ = ["MSSincResNet", "SincNet", "SincResNet", "MelResNet", "build_model", "MODELS",
           "COMPACT", "compact_config", "LAPTOP", "SIZES", "size_config", "canonical_name",
           "count_parameters", "AudioClassifier",
           "ResNetTrunk", "trunk_output_size", "BackboneWeightsUnavailable"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
