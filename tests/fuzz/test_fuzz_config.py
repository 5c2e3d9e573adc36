"""Fuzzing the settings files: ``TrainConfig.from_file`` and ``train --config`` on JSON and TOML
files with wrong types, unknown keys, absurd numbers, deep nesting and damaged bytes.

A settings file gives a config or a one-line ``ValueError`` naming it; the command line turns
that into ``mssincresnet: error: ...`` (status 2), never a traceback.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, strategies as st

from models.cli import build_parser
from models.commands.settings import config_from_args
from models.training.config import TrainConfig
from models.training.recipes import recipe_config
from tests.fuzz.support import assert_one_line_naming, fuzz_settings, hang_guard, mutated

pytestmark = pytest.mark.fuzz

_SCRATCH = tempfile.TemporaryDirectory(prefix="sincfb-fuzz-config-")
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
MESSAGE_LIMIT = 1000

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.sampled_from((0, -1, 1, 2 ** 63, 10 ** 30, 1e308, -0.0, math.inf, math.nan))
           | st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def toml_value(value) -> str:
    """``value`` in TOML (None has no TOML form; the caller leaves such keys out)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value)          # JSON strings are TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value if v is not None) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()
                           if v is not None) + "}"


def as_toml(values: dict) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in values.items()
                   if v is not None)


@st.composite
def settings_files(draw):
    """(suffix, bytes): a recipe's real settings with some values replaced by values of any
    type, maybe an unknown key, written as JSON or TOML, maybe then damaged byte-wise."""
    values = recipe_config(draw(st.sampled_from(("paper", "authors")))).to_dict()
    for key in draw(st.lists(st.sampled_from(FIELDS + ["no_such_key"]), max_size=3)):
        values[key] = draw(VALUES)
    suffix = draw(st.sampled_from((".json", ".toml")))
    data = (json.dumps(values) if suffix == ".json" else as_toml(values)).encode()
    if draw(st.integers(0, 3)) == 0:
        data = draw(mutated(data, header=len(data)))
    return suffix, data


def check_settings_file(suffix: str, data: bytes) -> None:
    path = Path(_SCRATCH.name) / f"hostile{suffix}"
    path.write_bytes(data)
    with hang_guard():
        try:
            config = TrainConfig.from_file(path)
        except ValueError as error:
            assert_one_line_naming(error, path)
            assert len(str(error)) < MESSAGE_LIMIT, str(error)[:300]
        else:
            assert config.sample_rate >= 1 and config.clip_samples >= 1
        args = build_parser().parse_args(["train", "--config", str(path)])
        try:
            config_from_args(args)
        except ValueError as error:   # main() prints it as one line with status 2
            assert "\n" not in str(error) and len(str(error)) < MESSAGE_LIMIT


@fuzz_settings(60, 5000)
@given(settings_files())
@example((".json", b'{"epochs": "ten"}'))
@example((".json", b'{"clip_seconds": "3"}'))                      # was a TypeError in a check
@example((".json", b"[1, 2]"))                                     # not a table
@example((".json", b"[" * 100000))                                 # RecursionError in json
@example((".toml", b"a = " + b"[" * 100000))                       # and in tomllib
@example((".json", b'{"epochs": 1}\xff'))                          # not UTF-8
@example((".json", b'{"sample_rate": 1000000000}'))                # sizes every clip
@example((".json", b'{"fixed_seconds": 1e12}'))
@example((".toml", b"batch_size = true"))
@example((".json", b'{"model_kwargs": [1]}'))
def test_damaged_settings_files(case):
    check_settings_file(*case)


def test_the_recipes_pass_their_own_checks():
    """Every recipe's settings, written to a file and read back, give the same config."""
    for name in ("paper", "authors"):
        path = Path(_SCRATCH.name) / f"{name}.toml"
        path.write_text(as_toml(recipe_config(name).to_dict()))
        assert TrainConfig.from_file(path) == recipe_config(name)
