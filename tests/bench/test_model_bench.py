"""Benchmarks W3/W4 (bench/model_bench.py) at the tiny size on the CPU, and the faithfulness of
the authors' re-implementation they are measured against."""
from __future__ import annotations

import json

import pytest
import torch

from bench import model_bench
from bench.authors_model import AuthorsMSSincResNet

IMPLS = {"sincfb", "authors-fp32", "authors-bf16-cl"}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[dict, str]:
    """One tiny run of both workloads (no compile: it takes minutes on a CPU)."""
    out = tmp_path_factory.mktemp("bench") / "model.json"
    assert model_bench.main(["--size", "tiny", "--no-compile", "--repeats", "2", "--threads", "1",
                             "--quiet", "--out", str(out)]) == 0
    return json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_every_case_ran(results):
    data, _ = results
    rows = data["rows"]
    assert not [r for r in rows if "error" in r]
    assert {(r["workload"], r["impl"]) for r in rows} == {(w, i) for w in ("W3", "W4") for i in IMPLS}
    size = model_bench.SIZES["tiny"]
    for row in rows:
        assert row["median_ms"] > 0 and row["runs"] == 2 and row["warmup_s"] >= 0
        assert row["clips"] == (size.batch if row["workload"] == "W3" else size.song_clips)
        assert row["clips_per_s"] == pytest.approx(row["clips"] / row["median_ms"] * 1e3)


def test_ratios_follow_the_medians(results):
    rows = results[0]["rows"]
    by = {(r["workload"], r["impl"]): r for r in rows}
    for (workload, _), row in by.items():
        fp32, tuned = by[(workload, "authors-fp32")], by[(workload, "authors-bf16-cl")]
        assert row["speedup_vs_authors_fp32"] == pytest.approx(fp32["median_ms"] / row["median_ms"])
        assert row["speedup_vs_authors_tuned"] == pytest.approx(tuned["median_ms"] / row["median_ms"])
        if row["peak_mem_mb"] is not None and fp32["peak_mem_mb"]:
            assert row["mem_ratio_vs_authors_fp32"] == pytest.approx(
                row["peak_mem_mb"] / fp32["peak_mem_mb"])


def test_meta_and_markdown(results):
    data, markdown = results
    meta = data["meta"]
    for key in ("device", "versions", "date", "git_commit", "command", "loadavg_start",
                "loadavg_end", "auto_backend", "definitions"):
        assert meta.get(key) not in (None, "", []), key
    assert meta["threads"] == 1 and meta["size"]["name"] == "tiny"
    assert meta["command"].startswith("python") and "--size tiny" in meta["command"]
    assert "| W4 | sincfb |" in markdown and "load average" in markdown
    assert meta["auto_measured"]["mode"] == "static" and "static rule" in markdown


def test_bad_arguments_are_refused():
    for argv in (["--workloads", "W9"], ["--impls", "authors-fp64"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            model_bench.parse_args(argv)


@pytest.mark.parametrize("training", [False, True])
def test_authors_model_matches_ours_with_the_same_weights(training):
    """The baseline is the same network: the authors' composite and models.MSSincResNet(spp=False)
    give the same logits from the same state dict."""
    from models import MSSincResNet

    size = model_bench.SIZES["tiny"]
    torch.manual_seed(0)
    ours = MSSincResNet(10, size.lengths, size.filters, size.bins, spp=False, backend="reference",
                        clip_samples=size.clip_samples)
    theirs = AuthorsMSSincResNet(10, size.filters, size.lengths, size.bins, size.clip_samples)
    theirs.load_state_dict(ours.state_dict())          # strict: the keys are the authors'
    x = torch.randn(3, 1, size.clip_samples)
    ours.train(training), theirs.train(training)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-4, atol=1e-4)
