"""Public hooks that models and users need instead of reaching into the layer's internals, and the
architecture rule that no backend imports another (issue "One algebra, many backends")."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import sincfb
from sincfb import FusedSincFilterbank, SincConv, filterbanks, sinc_layers
from sincfb.backends import registered_backends
from tests.oracles import numpy_mel_init

BACKENDS = Path(sincfb.__file__).parent / "backends"


def test_initial_cutoffs_are_the_mel_initialisation_whatever_was_learned():
    layer = SincConv(12, 101, 16000, min_low_hz=40, min_band_hz=60)
    with torch.no_grad():
        layer.low_hz_.mul_(1.7)                     # "learning" moves the cut-offs, not the start
    low, high = layer.initial_cutoffs_hz()
    low_raw, band_raw = numpy_mel_init(12, 16000, 40, 60)
    want_low = 40 + np.abs(low_raw)
    want_high = np.clip(want_low + 60 + np.abs(band_raw), 40, 8000)
    np.testing.assert_allclose(low.numpy(), want_low, rtol=1e-12)
    np.testing.assert_allclose(high.numpy(), want_high, rtol=1e-12)
    assert not torch.allclose(layer.cutoffs_hz()[0].double(), low)


def test_mel_scale_round_trip():
    hz = np.array([0.0, 30.0, 700.0, 7900.0])
    np.testing.assert_allclose(sincfb.mel_to_hz(sincfb.hz_to_mel(hz)), hz, atol=1e-9)
    assert sincfb.hz_to_mel(700.0) == pytest.approx(2595.0 * np.log10(2.0))


def test_set_backend_checks_the_name_and_takes_effect():
    bank = FusedSincFilterbank(4, 31, pool_bins=4)
    with pytest.raises(ValueError, match="unknown backend 'cuda-magic'"):
        bank.set_backend("cuda-magic")
    assert bank.set_backend("reference") is bank and bank.backend == "reference"
    bank(torch.randn(2, 1, 200))
    assert bank.resolved_backend("cpu") == "reference"


def test_filterbanks_and_sinc_layers_find_the_banks_of_any_model():
    from models import build_model, compact_config

    model = build_model("mssincresnet", 3, **compact_config("mssincresnet"))
    banks = list(filterbanks(model))
    assert [name for name, _ in banks] == ["sincNet1", "sincNet2", "sincNet3"]
    assert all(isinstance(b, FusedSincFilterbank) for _, b in banks)
    assert [name for name, _ in sinc_layers(model)] == ["sincNet1", "sincNet2", "sincNet3"]
    sincnet = build_model("sincnet", 3, **compact_config("sincnet"))
    assert list(filterbanks(sincnet)) == []
    assert len(list(sinc_layers(sincnet))) == 1


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_no_backend_imports_another():
    """Each registered backend lives in the module of its name (sincfb/backends/<name>.py)."""
    backends = set(registered_backends())
    for name in backends:
        imported = _imported_modules(BACKENDS / f"{name}.py")
        assert not imported & (backends - {name}), (name, imported & backends)
