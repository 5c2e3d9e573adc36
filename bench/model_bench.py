"""Benchmarks W3 (one MS-SincResNet training step) and W4 (classify one 30-s song), DESIGN.md §6.

Usage: ``python -m bench.model_bench [--size paper|compact] [--workloads W3,W4] [--device ...]
[--out PATH]``. Every implementation runs in the same invocation with the same weights and inputs,
so the ratios between them are what to quote:

- ``sincfb``: ``models.MSSincResNet(spp=False, backend='auto')``, run the way the package runs it:
  W3 as the trainer does (bf16 autocast and channels-last on CUDA, fp32 on CPU), W4 as
  ``mssincresnet predict`` does (``models.inference.predict.prepare_for_inference``: trunk BatchNorms
  folded, channels-last; bf16 autocast on CUDA);
- ``authors-fp32``: the authors' released model (``bench.authors_model``) in float32;
- ``authors-bf16-cl-compile``: the same under bf16 autocast, channels-last and ``torch.compile``
  (``authors-bf16-cl`` with ``--no-compile``).

W3: zero_grad, forward, cross-entropy, backward and an SGD step (the paper's Nesterov momentum and
weight decay) on B clips. W4: cut a 30-s song into all its clips (hop 0.5 s), classify them in eval
mode in batches of 32 and take the majority vote, with the functions ``mssincresnet evaluate`` uses.

Timing: on CPU, ``torch.utils.benchmark`` medians of single calls (a song takes seconds there, so
a fixed number of repeats), the implementations' calls interleaved round by round so that load
from other processes falls on all of them alike; on CUDA, ``triton.testing.do_bench`` medians.
Peak memory: growth of the CUDA allocator's peak, or of the CPU resident set, over one call after
warm-up (model weights excluded).
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from bench import harness
from bench.common import (SAMPLE_RATE, BF16Autocast, add_run_arguments, csv_list, load_average,
                          measured_auto_choices, package_version, ratio, results_path,
                          run_metadata, write_json_atomic)

__all__ = ["ModelSize", "SIZES", "IMPLS", "main", "parse_args", "plan_cases", "prepare",
           "run_workload", "add_ratios", "render_markdown"]

NUM_CLASSES = 10
SINCFB = "sincfb"
AUTHORS = "authors-fp32"
TUNED = "authors-bf16-cl-compile"
TUNED_EAGER = "authors-bf16-cl"
IMPLS = (SINCFB, AUTHORS, TUNED, TUNED_EAGER)
WORKLOADS = ("W3", "W4")
VOTE = "majority"


@dataclass(frozen=True)
class ModelSize:
    """Geometry of a benchmark: clips, banks, W3's batch and W4's song."""

    batch: int              # W3: clips per training step
    clip_samples: int
    filters: int
    lengths: tuple[int, ...]
    bins: int
    song_seconds: float     # W4: length of the song
    hop_samples: int        # W4: hop between clips
    eval_batch: int         # W4: clips per forward pass

    @property
    def song_clips(self) -> int:
        """Number of clips W4 classifies (every hop-spaced clip that fits in the song)."""
        song = int(round(self.song_seconds * SAMPLE_RATE))
        return 1 if song <= self.clip_samples else (song - self.clip_samples) // self.hop_samples + 1


SIZES = {
    # The paper's: 3-s clips at 16 kHz, 160 filters of 251/501/1001 taps, 1024 bins, B=32,
    # a 30-s song in 55 clips.
    "paper": ModelSize(32, 48000, 160, (251, 501, 1001), 1024, 30.0, 8000, 32),
    # models.compact_config: 0.5-s clips, 40 filters of 31/63/127 taps, 64 bins, hop 0.25 s.
    "compact": ModelSize(8, 8000, 40, (31, 63, 127), 64, 30.0, 4000, 32),
    # For tests: seconds on a CPU (16 x 32 images still pass through ResNet-18).
    "tiny": ModelSize(2, 4000, 16, (31, 63, 127), 32, 1.0, 2000, 32),
}


# ----------------------------------------------------------------------------- models and steps
def build_runner(spec: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(model, runner)`` for a case: the parameters to optimise, and the module to call (the
    model itself, or wrapped for autocast and compiled)."""
    from models import MSSincResNet
    from bench.authors_model import AuthorsMSSincResNet

    size, impl, device = spec["size"], spec["impl"], torch.device(spec["device"])
    torch.manual_seed(spec["seed"])       # the same weights for every implementation
    ours = MSSincResNet(NUM_CLASSES, size["lengths"], size["filters"], size["bins"], SAMPLE_RATE,
                        spp=False, backend="auto", clip_samples=size["clip_samples"])
    tuned = impl in (TUNED, TUNED_EAGER)
    if impl == SINCFB and spec["workload"] == "W4":
        from models.inference.predict import prepare_for_inference  # as `mssincresnet predict` runs it
        model, amp = prepare_for_inference(ours, device), device.type == "cuda"
    elif impl == SINCFB:
        model, amp = ours, device.type == "cuda"            # as the trainer runs it
    else:
        model = AuthorsMSSincResNet(NUM_CLASSES, size["filters"], size["lengths"], size["bins"],
                                    size["clip_samples"], SAMPLE_RATE, channels_last=tuned)
        model.load_state_dict(ours.state_dict())
        amp = tuned
    model = model.to(device)
    if amp:
        model = model.to(memory_format=torch.channels_last)
    runner = BF16Autocast(model, device.type) if amp else model
    if impl == TUNED:
        # A fresh dynamo state per case, so an earlier case's graphs cannot count against this one.
        torch._dynamo.reset()
        runner = torch.compile(runner)
    return model, runner


def make_train_step(spec: dict) -> Callable:
    """W3: one SGD training step on a fixed random batch of B clips."""
    model, runner = build_runner(spec)
    size, device = spec["size"], spec["device"]
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    clips = (0.1 * torch.randn(size["batch"], 1, size["clip_samples"], generator=gen)).to(device)
    labels = torch.randint(0, NUM_CLASSES, (size["batch"],), generator=gen).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, nesterov=True,
                                weight_decay=1e-4)
    runner.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(runner(clips).float(), labels)
        loss.backward()
        optimizer.step()
        return loss
    return step


def make_song_step(spec: dict) -> Callable:
    """W4: cut a random 30-s song into clips, classify them all in eval mode, vote."""
    from models.data.audio import cut_clips
    from models.evaluation.results import vote
    from models.evaluation.scoring import classify_clips

    _, runner = build_runner(spec)
    size, device = spec["size"], spec["device"]
    gen = torch.Generator().manual_seed(spec["seed"] + 2)
    song = (0.1 * torch.randn(int(round(size["song_seconds"] * SAMPLE_RATE)), generator=gen)).numpy()
    runner.eval()

    def step():
        clips = cut_clips(song, size["clip_samples"], size["hop_samples"])
        # amp=False: autocast, where a case uses it, is already inside the runner
        probabilities = classify_clips(runner, clips, size["eval_batch"], device, amp=False)
        return vote(probabilities, VOTE)
    return step


# ----------------------------------------------------------------------------- measurement
def memory_probe(step: Callable, device: str) -> Optional[float]:
    """Peak memory growth (MB) over one call: the CUDA allocator's, or on CPU the resident set's
    after handing free heap back to the OS (buffers this large are mmapped, so the mark is not
    hidden by reused heap); None when the high-water mark cannot be reset."""
    if torch.device(device).type == "cuda":
        return harness.cuda_memory_probe(step, device, calls=1)
    peak, was_reset = harness.cpu_rss_probe(step, 1)
    return peak if was_reset else None


def prepare(spec: dict) -> tuple[dict, Optional[Callable]]:
    """Build and warm up one case, probe its memory; ``(row, step)``, step None on failure."""
    size = spec["size"]
    clips = size["batch"] if spec["workload"] == "W3" else ModelSize(**size).song_clips
    row = {"workload": spec["workload"], "impl": spec["impl"], "clips": clips}
    try:
        with harness.quiet_cuda_home_warning():
            step = (make_train_step if spec["workload"] == "W3" else make_song_step)(spec)
            # compiled cases: the first calls compile (W4's last, smaller batch compiles again)
            row["warmup_s"] = harness.warm_up(step, 2 if spec["impl"] == TUNED else 1,
                                              spec["device"])
            row["peak_mem_mb"] = memory_probe(step, spec["device"])
        return row, step
    except Exception as exc:   # noqa: BLE001 -- any failure is a result, the run goes on
        row["error"] = f"{type(exc).__name__}: {exc}".strip()[:2000]
        row["traceback"] = traceback.format_exc()[-4000:]
        return row, None


def time_interleaved(steps: dict, repeats: int) -> dict:
    """CPU: ``repeats`` rounds, each timing one call of every case (``torch.utils.benchmark``),
    starting with a different case each round. On a shared machine the load drifts; interleaving
    exposes every case to the same drift, which keeps the ratios honest."""
    from torch.utils import benchmark

    names = list(steps)
    timers = {n: benchmark.Timer(stmt="step()", globals={"step": steps[n]},
                                 num_threads=torch.get_num_threads()) for n in names}
    samples = {n: [] for n in names}
    for round_ in range(repeats):
        for n in names[round_ % len(names):] + names[:round_ % len(names)]:
            samples[n].append(timers[n].timeit(1))
    out = {}
    for n in names:
        merged = benchmark.Measurement.merge(samples[n])[0]
        out[n] = {"median_ms": merged.median * 1e3, "iqr_ms": merged.iqr * 1e3,
                  "runs": len(merged.times),
                  "times_ms": [round(t * 1e3, 3) for t in merged.times]}   # in call order
    return out


def run_workload(specs: list[dict], quiet: bool = False) -> list[dict]:
    """Prepare every implementation of one workload, then time them (interleaved on CPU,
    ``do_bench`` one after the other on CUDA); returns one row per implementation."""
    rows, steps = {}, {}
    for spec in specs:
        rows[spec["impl"]], step = prepare(spec)
        if step is not None:
            steps[spec["impl"]] = step
        _progress(rows[spec["impl"]], "prepared", quiet)
    device = specs[0]["device"]
    with harness.quiet_cuda_home_warning():
        if torch.device(device).type == "cuda":
            timings = {n: harness.time_cuda(s, specs[0]["min_time"]) for n, s in steps.items()}
        else:
            timings = time_interleaved(steps, specs[0]["repeats"]) if steps else {}
    for name, timing in timings.items():
        rows[name].update(timing)
        rows[name]["clips_per_s"] = rows[name]["clips"] / (timing["median_ms"] / 1e3)
        _progress(rows[name], "timed", quiet)
    return list(rows.values())


def _progress(row: dict, stage: str, quiet: bool) -> None:
    if quiet:
        return
    if "error" in row:
        text = "ERROR " + row["error"].splitlines()[0][:200]
    elif stage == "prepared":
        mem = row.get("peak_mem_mb")
        text = f"warm-up {row['warmup_s']:.1f} s, peak {'n/a' if mem is None else f'{mem:.0f} MB'}"
    else:
        text = (f"median {row['median_ms']:.1f} ms (IQR {row['iqr_ms']:.1f}) "
                f"over {row.get('runs', '?')} runs")
    print(f"{row['workload']} {row['impl']} {stage}: {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the run
def implementations(args) -> list[str]:
    """The implementations to compare, baselines included (--impls, or all for the device)."""
    if args.impls:
        return list(args.impls)
    return [SINCFB, AUTHORS, TUNED_EAGER if args.no_compile else TUNED]


def plan_cases(args, size: ModelSize) -> dict:
    """The cases of each workload: ``{workload: [spec per implementation]}``."""
    common = {"size": asdict(size), "device": args.device, "repeats": args.repeats,
              "min_time": args.min_time, "seed": 0}
    return {w: [{**common, "workload": w, "impl": impl} for impl in implementations(args)]
            for w in args.workloads}


def add_ratios(rows: list[dict]) -> None:
    """Speedups vs each baseline (t_baseline / t_impl) and memory vs the authors' fp32 model."""
    ok = {(r["workload"], r["impl"]): r for r in rows if "median_ms" in r}
    for row in rows:
        fp32 = ok.get((row["workload"], AUTHORS), {})
        tuned = ok.get((row["workload"], TUNED)) or ok.get((row["workload"], TUNED_EAGER)) or {}
        row["speedup_vs_authors_fp32"] = ratio(fp32.get("median_ms"), row.get("median_ms"))
        row["speedup_vs_authors_tuned"] = ratio(tuned.get("median_ms"), row.get("median_ms"))
        row["mem_ratio_vs_authors_fp32"] = ratio(row.get("peak_mem_mb"), fp32.get("peak_mem_mb"))


def collect_meta(args, size: ModelSize, argv: list[str]) -> dict:
    """The run's record (:func:`bench.common.run_metadata`) and the sizes of the run."""
    import sincfb

    device_type = torch.device(args.device).type
    return {
        **run_metadata("bench.model_bench", argv, args.device, args.threads,
                       {"torchvision": package_version("torchvision"),
                        "triton": package_version("triton")}),
        "size": {"name": args.size, **asdict(size), "song_clips": size.song_clips,
                 "sample_rate": SAMPLE_RATE, "classes": NUM_CLASSES},
        "auto_backend": {str(L): sincfb.resolve_backend("auto", device_type, L)
                         for L in size.lengths},
        "timer": "triton.testing.do_bench" if device_type == "cuda" else
                 f"torch.utils.benchmark.Timer.timeit(1) x {args.repeats}",
        "schedule": "in one process; CPU: the implementations' timed calls interleaved round by "
                    "round, so load from other processes hits all of them alike",
        "definitions": {
            "W3": "zero_grad + forward + cross-entropy + backward + SGD step on `clips` clips",
            "W4": f"cut a {size.song_seconds:g}-s song into `clips` clips, classify in batches of "
                  f"{size.eval_batch} in eval mode, {VOTE} vote",
            "speedup_vs_<baseline>": "median_ms(baseline) / median_ms(impl), same workload",
            "peak_mem_mb": "growth over one call after warm-up, model weights excluded: CUDA "
                           "allocator peak minus allocated before; CPU: RSS high-water mark "
                           "minus RSS before, after malloc_trim (null if the mark cannot reset)",
        },
    }


# ----------------------------------------------------------------------------- report
COLUMNS = (("median ms", "median_ms", "{:.1f}"), ("IQR ms", "iqr_ms", "{:.1f}"),
           ("runs", "runs", "{}"), ("clips/s", "clips_per_s", "{:.2f}"),
           ("peak MB", "peak_mem_mb", "{:.0f}"),
           ("× authors-fp32", "speedup_vs_authors_fp32", "{:.2f}"),
           ("× authors-tuned", "speedup_vs_authors_tuned", "{:.2f}"),
           ("mem / authors-fp32", "mem_ratio_vs_authors_fp32", "{:.2f}"))


def _cells(row: dict) -> list[str]:
    ident = [row["workload"], row["impl"], str(row["clips"])]
    if "error" in row:
        return ident + ["error"] + ["—"] * (len(COLUMNS) - 1)
    return ident + ["—" if row.get(k) is None else f.format(row[k]) for _, k, f in COLUMNS]


def _commit(meta: dict) -> str:
    commit = str(meta.get("git_commit", "?"))
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def _environment(meta: dict) -> str:
    """The OMP_* settings and any variable forcing a code path (ATEN_CPU_CAPABILITY, ...)."""
    settings = {**meta.get("environment", {}), **meta.get("cpu", {}).get("forcing_environment", {})}
    settings = {k: v for k, v in settings.items() if v}
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "no OMP_* settings"


def _load(loadavg) -> str:
    return f"{loadavg[0]:.2f}" if loadavg else "?"


def render_markdown(results: dict) -> str:
    """A header line (machine, load, size, versions, command) and a markdown table of the rows."""
    meta, rows = results.get("meta", {}), results.get("rows", [])
    size = meta.get("size", {})
    start, end = (_load(meta.get(key)) for key in ("loadavg_start", "loadavg_end"))
    header = (f"**{meta.get('device', '?')}** ({meta.get('cpu_count')} CPUs, torch threads "
              f"{meta.get('threads')}, 1-min load average {start} at start, {end} at end, "
              f"{_environment(meta)}) · "
              f"size {size.get('name')} "
              f"(clip {size.get('clip_samples')} samples, K={size.get('filters')}, "
              f"L={size.get('lengths')}, P={size.get('bins')}) · torch "
              f"{meta.get('versions', {}).get('torch')} · commit {_commit(meta)} · "
              f"{meta.get('date')} · "
              f"sincfb auto backend (static rule) {meta.get('auto_backend')}, measured "
              f"{meta.get('auto_measured', {}).get('choices', 'not recorded')}"
              f"\n\n`{meta.get('command')}`")
    names = ["workload", "impl", "clips"] + [h for h, _, _ in COLUMNS]
    lines = [header, "", "| " + " | ".join(names) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(names))) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    errors = [f"- {r['workload']} {r['impl']}: {r['error'].splitlines()[0]}" for r in rows
              if "error" in r]
    return "\n".join(lines + (["", "Errors:"] + errors if errors else []))


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m bench.model_bench``."""
    p = argparse.ArgumentParser(prog="python -m bench.model_bench",
                                description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES),
                   help="default: paper with CUDA, else compact (tiny: for tests)")
    p.add_argument("--workloads", type=csv_list(), default=list(WORKLOADS), help="default: W3,W4")
    p.add_argument("--batch", type=int, help="override W3's batch of clips")
    p.add_argument("--song-seconds", type=float, help="override W4's song length (default 30)")
    p.add_argument("--impls", type=csv_list(), help=f"subset of {','.join(IMPLS)}")
    p.add_argument("--no-compile", action="store_true",
                   help=f"the tuned baseline without torch.compile ({TUNED_EAGER})")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per CPU case (default 5)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per CUDA case")
    add_run_arguments(p, "results JSON (default bench/results/model-<device>-<size>-<date>.json); "
                         "the markdown table goes beside it (.md)")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """Parse and complete the arguments (defaults that depend on the device)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.size = args.size or ("paper" if torch.device(args.device).type == "cuda" else "compact")
    for name, allowed in (("workloads", WORKLOADS), ("impls", IMPLS)):
        bad = set(getattr(args, name) or ()) - set(allowed)
        if bad:
            parser.error(f"unknown {name}: {sorted(bad)}; choose from {list(allowed)}")
    if args.repeats < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--repeats and --batch must be >= 1")
    return args


def resolve_size(args) -> ModelSize:
    """The named size with --batch and --song-seconds applied."""
    size = SIZES[args.size]
    return replace(size, batch=args.batch or size.batch,
                   song_seconds=args.song_seconds or size.song_seconds)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the benchmark, write the JSON and the markdown table, print the table."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    size = resolve_size(args)
    meta = collect_meta(args, size, argv)
    start, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        rows = [row for specs in plan_cases(args, size).values()
                for row in run_workload(specs, args.quiet)]
    finally:
        torch.set_num_threads(threads)      # in-process callers (tests) keep their setting
    meta["total_wall_s"] = time.perf_counter() - start
    meta["loadavg_end"] = load_average()
    meta["auto_measured"] = measured_auto_choices(args.device)
    add_ratios(rows)
    results = {"meta": meta, "rows": rows}
    out = args.out or results_path(meta, "model-")
    write_json_atomic(out, results)
    table = render_markdown(results)
    Path(out).with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"wrote {out} and {Path(out).with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
