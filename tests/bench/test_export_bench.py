"""bench.export_bench (W4 through onnxruntime) end to end at the compact size: both exports pass
their check against eager, the three implementations pick the same class, the JSON says which
machine and versions ran it."""
from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from bench import export_bench  # noqa: E402


def test_compact_run_writes_every_row_and_the_machine(tmp_path, capsys):
    out = tmp_path / "w4-onnx.json"
    assert export_bench.main(["--size", "compact", "--threads", "1", "--repeats", "1",
                              "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {row["impl"]: row for row in data["rows"]}
    assert set(rows) == set(export_bench.IMPLS)
    assert rows["eager"]["ratio_to_eager"] == 1.0
    for row in rows.values():
        assert len(row["seconds"]) == 1 and 0 < row["median_s"] < math.inf
    assert len({row["winner"] for row in rows.values()}) == 1
    meta = data["meta"]
    assert meta["cpu"]["model"] and meta["versions"]["onnxruntime"]
    for export in meta["exports"].values():
        assert export["relative_error"] < 1e-4 and "path" not in export
    assert "--size compact" in meta["command"]
    assert "ort-song" in capsys.readouterr().out


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        export_bench.parse_args(["--repeats", "0"])
