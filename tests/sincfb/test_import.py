"""Importing sincfb is cheap: no triton, no inductor, no dynamo; backends are looked up lazily."""
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sincfb.backends import assume_constant_result

ROOT = Path(__file__).resolve().parents[2]

# What a fresh interpreter has loaded after `import sincfb`, and what the triton backend says.
_PROBE = """
import json, sys
import sincfb
from sincfb.backends import get_backend
triton = get_backend("triton")
print(json.dumps({"file": sincfb.__file__,
                  "heavy": [m for m in ("triton", "torch._inductor", "torch._dynamo")
                            if m in sys.modules],
                  "triton_available": triton.available(),
                  "triton_reason": triton.unavailable_reason()}))
"""


@functools.cache
def _probe(interpret: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("interpret", [False, True])
def test_import_loads_no_triton_inductor_or_dynamo(interpret):
    probe = _probe(interpret)
    assert Path(probe["file"]).resolve().is_relative_to(ROOT)   # this checkout's package
    assert probe["heavy"] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine triton is available")
def test_triton_is_offered_on_a_cpu_only_machine_only_with_the_interpreter():
    without, with_interpreter = _probe(False), _probe(True)
    assert not without["triton_available"] and "TRITON_INTERPRET" in without["triton_reason"]
    assert with_interpreter["triton_available"] and with_interpreter["triton_reason"] is None


def test_constant_marker_matches_torch_compiler():
    """Our import-free marker sets exactly what torch.compiler.assume_constant_result sets, so
    dynamo treats resolve_backend as constant (the torch.compile tests rely on it)."""
    def theirs():
        return 1

    def ours():
        return 1

    assert torch.compiler.assume_constant_result(theirs) is theirs
    assert assume_constant_result(ours) is ours
    assert vars(theirs) == vars(ours) and vars(ours)
