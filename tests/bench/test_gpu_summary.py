"""bench/gpu/summary.py: the one-screen summary bench/gpu_check.sh writes beside its JSONs."""
import json
import random

from bench.gpu.summary import main


def _write(path, rows):
    path.write_text(json.dumps({"meta": {}, "rows": rows}))


def test_stages_and_headline_ratios(tmp_path):
    seed = random.randrange(2**31)
    print("seed", seed)
    rng = random.Random(seed)
    fp32, compiled, tflops, ceiling = (rng.uniform(1, 30) for _ in range(4))
    (tmp_path / "status.txt").write_text("env 0\nmemcheck 0\nracecheck unavailable (refused)\n"
                                         "tests 1\nceilings 124\nbench_w2 0\nbench_w1_L1001 0\n")
    _write(tmp_path / "bench_w2.json", [
        {"workload": "W2", "mode": "forward+backward", "impl": "naive-fp32",
         "speedup_vs_naive_fp32": 1.0},
        {"workload": "W2", "mode": "forward+backward", "impl": "sincfb-triton",
         "speedup_vs_naive_fp32": fp32, "speedup_vs_naive_bf16_compile": compiled}])
    _write(tmp_path / "bench_w1_L1001.json", [
        {"workload": "W1", "mode": "forward+backward", "L": 1001, "impl": "sincfb-triton",
         "tflops": 1e6},
        {"workload": "W1", "mode": "forward", "L": 1001, "impl": "sincfb-triton",
         "tflops": tflops}])
    (tmp_path / "ceilings.json").write_text(json.dumps({"bf16_matmul_tflops": ceiling}))
    assert main([str(tmp_path)]) == 0
    text = (tmp_path / "summary.txt").read_text()
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert lines["memcheck"].split()[1] == "pass"
    assert "unavailable" in lines["racecheck"]
    assert "FAIL (exit 1)" in lines["tests"] and "TIMED OUT" in lines["ceilings"]
    ratios = [line for line in text.splitlines() if "   target " in line]
    assert f"{fp32:.2f}" in ratios[0] and f"{compiled:.2f}" in ratios[1]
    assert f"{tflops / ceiling:.2f}" in ratios[2]


def test_missing_runs_read_not_measured(tmp_path):
    (tmp_path / "status.txt").write_text("memcheck 86\nbench_w2 skipped (sanitizer errors)\n")
    assert main([str(tmp_path), "STOPPED"]) == 0
    text = (tmp_path / "summary.txt").read_text()
    assert "STOPPED" in text and "FAIL (exit 86)" in text and "skipped (sanitizer errors)" in text
    assert text.count("not measured") == 3
