"""The benchmark harness (bench/) end to end on the 'tiny' size: JSON, ratios, report, isolation."""
from __future__ import annotations

import json

import pytest

from bench import harness, report

# One thread keeps the run modest and its timings steadier on a shared 2-core machine.
TINY = ["--size", "tiny", "--no-compile", "--threads", "1", "--quiet"]


def run_bench(tmp_path, name: str, *extra: str) -> dict:
    """Run ``python -m bench`` in this process with ``TINY`` + ``extra``; return the parsed JSON."""
    out = tmp_path / f"{name}.json"
    assert harness.main([*TINY, "--out", str(out), *extra]) == 0
    assert out.exists()
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """The whole tiny benchmark (W1 and W2, all modes) run in-process once for this module."""
    return run_bench(tmp_path_factory.mktemp("bench"), "tiny", "--in-process",
                     "--backends", "reference")


def test_meta_fields(tiny):
    meta = tiny["meta"]
    for key in ("device", "threads", "versions", "date", "git_commit", "command", "size",
                "auto_backend"):
        assert meta.get(key) not in (None, ""), key
    assert meta["versions"]["torch"] and meta["versions"]["python"]
    assert meta["size"]["name"] == "tiny" and meta["size"]["filters"] == 16
    assert meta["threads"] == 1
    assert set(meta["auto_backend"]) == {"31", "63", "127"}
    # the suite runs with SINCFB_AUTO=static (tests/conftest.py); the field says so
    assert meta["auto_measured"]["mode"] == "static"
    assert isinstance(meta["auto_measured"]["choices"], dict)


def test_meta_says_which_cpu_and_paths(tiny):
    """Issue "Runs on every CPU": the CPU model, the flags that matter and the GEMM route."""
    cpu = tiny["meta"]["cpu"]
    with open("/proc/cpuinfo") as info:
        flags = next(line for line in info if line.startswith(("flags", "Features")))
    flags = set(flags.split(":", 1)[1].split())
    assert cpu["model"] and cpu["architecture"]
    assert cpu["key_flags"]["avx2"] == ("avx2" in flags)
    assert cpu["key_flags"]["avx512f"] == ("avx512f" in flags)
    assert cpu["key_flags"]["amx_tile"] == ("amx_tile" in flags)
    assert cpu["sincfb_isa"] in ("avx2", "baseline") and "at::mm_out" in cpu["gemm_route"]
    assert cpu["aten_cpu_capability"]


def test_rows_cover_every_case(tiny):
    rows = tiny["rows"]
    assert not [r for r in rows if "error" in r]
    cases = {(r["workload"], r["mode"], str(r["L"]), r["impl"]) for r in rows}
    for impl in ("naive-fp32", "sincfb-reference"):
        for L in ("31", "63", "127"):
            for mode in ("forward", "forward+backward", "eval-forward"):
                assert ("W1", mode, L, impl) in cases
        for mode in ("forward+backward", "eval-forward"):
            assert ("W2", mode, "three-bank", impl) in cases
    assert all(r["median_ms"] > 0 and r["gflop"] > 0 and r["tflops"] > 0 for r in rows)


def test_ratios_match_medians(tiny):
    rows = tiny["rows"]
    naive = {(r["workload"], r["mode"], str(r["L"])): r for r in rows if r["impl"] == "naive-fp32"}
    for row in rows:
        base = naive[(row["workload"], row["mode"], str(row["L"]))]
        assert row["speedup_vs_naive_fp32"] == pytest.approx(base["median_ms"] / row["median_ms"])
        assert row["speedup_vs_naive_bf16_compile"] is None   # --no-compile: no such baseline
        assert row["peak_mem_mb"] is None                     # in-process on CPU: not reported


def test_folded_flops(tiny):
    w1 = {(r["mode"], r["L"]): r["gflop"] for r in tiny["rows"] if r["workload"] == "W1"}
    assert w1[("forward", 127)] == pytest.approx(2 * 16 * 128 * (4000 - 127 + 1) / 1e9)
    assert w1[("forward+backward", 127)] == pytest.approx(3 * w1[("forward", 127)])
    assert w1[("eval-forward", 127)] == pytest.approx(w1[("forward", 127)])


def test_markdown_report(tiny, tmp_path, capsys):
    text = report.render_markdown(tiny)
    assert "| workload | mode | L | impl |" in text
    for impl in ("naive-fp32", "sincfb-reference"):
        assert f"| {impl} |" in text
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tiny))
    assert report.main([str(path)]) == 0
    assert capsys.readouterr().out.strip() == text


def test_failing_case_is_recorded(tmp_path):
    results = run_bench(tmp_path, "err", "--in-process", "--workloads", "W1", "--lengths", "31",
                        "--modes", "eval-forward", "--impls", "naive-fp32,sincfb-no-such-backend")
    rows = {r["impl"]: r for r in results["rows"]}
    assert "error" not in rows["naive-fp32"]
    assert "no-such-backend" in rows["sincfb-no-such-backend"]["error"]
    assert "error" in report.render_markdown(results)


def test_subprocess_isolation_reports_peak_memory(tmp_path):
    results = run_bench(tmp_path, "isolated", "--workloads", "W1", "--lengths", "127",
                        "--modes", "forward+backward", "--impls", "naive-fp32")
    assert results["meta"]["isolation"] == "subprocess per case"
    [row] = results["rows"]
    assert "error" not in row, row.get("traceback")
    assert row["median_ms"] > 0
    assert row["peak_mem_mb"] > 0
    assert row["mem_ratio_vs_naive_fp32"] == pytest.approx(1.0)
