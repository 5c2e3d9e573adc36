"""The Triton kernels compiled ahead of time for Hopper (sm_90) and Ampere (sm_80), without a GPU.

``python -m bench.gpu.compile_check`` (in a subprocess without TRITON_INTERPRET) specialises each
kernel as a real launch at the paper's sizes is and compiles it with the ptxas shipped in the
triton wheel. The default run compiles the configuration each kernel uses when autotuning is off,
in every precision, for both targets, and checks the committed resource table
(bench/results/triton-compile-sm90-sm80.json, BENCHMARKS.md) against it; the table's own rows
cover every configuration autotune can try. Compiling all of them (52 compiles, about a minute of
CPU) is marked slow and runs with SINCFB_FULL_SWEEP=1.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

tk = pytest.importorskip("sincfb.backends.triton_kernels")

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "bench" / "results" / "triton-compile-sm90-sm80.json"
LISTS = {"fwd": tk.FWD_CONFIGS, "corr": tk.CORR_CONFIGS, "dx": tk.DX_CONFIGS}
ARCHS = ("sm_90", "sm_80")


def _key(arch, kernel, precision, config, warps, stages):
    return arch, kernel, precision, tuple(sorted(config.items())), warps, stages


def _row_key(row):
    return _key(row["arch"], row["kernel"], row["precision"], row["config"], row["num_warps"],
                row["num_stages"])


def _expected_keys(first_only: bool):
    """Every (target, kernel, precision, config) the config lists hold."""
    keys = []
    for arch in ARCHS:
        keys.append(_key(arch, "taps", "-", tk.TAPS_CONFIG.kwargs, tk.TAPS_CONFIG.num_warps,
                         tk.TAPS_CONFIG.num_stages))
        for kernel, table in LISTS.items():
            for precision in ("bf16", "tf32", "ieee"):
                for c in table[precision][:1] if first_only else table[precision]:
                    keys.append(_key(arch, kernel, precision, c.kwargs, c.num_warps,
                                     c.num_stages))
    return keys


def _committed():
    table = json.loads(TABLE.read_text())
    return {_row_key(r): r for r in table["rows"]}, table["shared_limit"]


def _compile(tmp_path, which: str):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")
    report = tmp_path / "compile.json"
    run = subprocess.run([sys.executable, "-m", "bench.gpu.compile_check", "--arch", "90,80",
                          "--configs", which, "--json", str(report)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = json.loads(report.read_text())
    return table["rows"], table["shared_limit"]


def _check_resources(rows, shared_limit):
    """What the config lists promise (their comment): nothing over the target's shared memory;
    the defaults spill nothing on sm_90; the tensor-core precisions reach wgmma on sm_90."""
    for row in rows:
        assert "error" not in row, row
        assert row["shared_bytes"] <= shared_limit[row["arch"]] and row["fits_shared"], row
        if row["arch"] != "sm_90" or row["kernel"] == "taps":
            continue
        if row["precision"] != "ieee":
            assert row["mma"].startswith("wgmma"), row
        if row["default"]:
            assert row["spill_store_bytes"] == 0 and row["spill_load_bytes"] == 0, row


def test_resource_table_covers_every_config_and_keeps_the_promises():
    """The committed table has one row per config autotune can try (a config added or changed
    without re-running compile_check fails here), and every row keeps the lists' promises."""
    committed, shared_limit = _committed()
    assert sorted(committed) == sorted(_expected_keys(first_only=False))
    assert shared_limit == {"sm_90": 232448, "sm_80": 166912}   # opt-in bytes per block
    _check_resources(committed.values(), shared_limit)


def _matches_table(rows):
    committed, _ = _committed()
    for row in rows:
        want = committed[_row_key(row)]
        for field in ("registers", "spill_store_bytes", "spill_load_bytes", "shared_bytes", "mma"):
            assert row[field] == want[field], (field, row, want)


def test_default_configs_compile_for_hopper_and_ampere(tmp_path):
    """The autotune-off configs, every precision, sm_90 and sm_80: they compile, keep the
    promises, and compile to exactly what the committed table says."""
    rows, shared_limit = _compile(tmp_path, "first")
    assert sorted(map(_row_key, rows)) == sorted(_expected_keys(first_only=True))
    _check_resources(rows, shared_limit)
    _matches_table(rows)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SINCFB_FULL_SWEEP") != "1", reason="SINCFB_FULL_SWEEP=1")
def test_every_config_compiles_for_hopper_and_ampere(tmp_path):
    rows, shared_limit = _compile(tmp_path, "all")
    assert sorted(map(_row_key, rows)) == sorted(_expected_keys(first_only=False))
    _check_resources(rows, shared_limit)
    _matches_table(rows)
