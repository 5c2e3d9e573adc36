#!/usr/bin/env bash
# The prepared GPU run (issues 3 and 22): memory checks first, then the GPU tests of the 'triton'
# backend, then the W1/W2 benchmarks (DESIGN.md §6) against the naive baselines, all within
# 10 minutes on one H100/H200.
#
#   bash bench/gpu_check.sh [OUTDIR]
#
# OUTDIR defaults to $OUT, else bench/results/gpu-check-<date>.
#
# Needs only what the device machines have preinstalled (python3 with torch 2.11, triton 3.6,
# pytest, numpy; CUDA's compute-sanitizer): nothing is installed, nothing is downloaded. Runs from
# the repository root with PYTHONPATH=. (set here). Every stage has its own timeout (cut to the
# time left) and log. Stages, in order, and what they write into OUTDIR:
#   env.log               nvidia-smi, versions, the sanitizer found
#   memcheck.log          compute-sanitizer --tool memcheck on bench/gpu/sanitize.py: one small
#                         forward + backward per precision, every kernel (taps, fwd, corr, dx)
#   racecheck.log         the same under --tool racecheck: every kernel but taps shares memory
#                         across warps (dot operands, pipelined tiles, layout conversions)
#   tests.log, tests.xml  tests/sincfb/test_triton_cuda.py (-s: prints per-case errors)
#   ceilings.json/.log    measured bf16/tf32 matmul rates and copy bandwidth
#   bench_w2.json/.log    W2 forward+backward, naive-fp32 / naive-bf16-compile / sincfb-triton
#   bench_w1_L1001.json   W1 at L=1001, forward and forward+backward (the TFLOP/s target)
#   bench_w1_L251_501.json  W1 forward at L=251 and 501 vs naive-fp32, if time is left
#   status.txt            one line per stage: name and exit code (124 = timed out) or a word
#   summary.txt           pass/fail per stage and the three headline ratios (bench/gpu/summary.py)
# A memory error or race found by the sanitizer (or a non-finite result of its workload) stops
# the benchmarks: their numbers would mean nothing. A sanitizer that is missing, refuses the
# device (as on gVisor machines) or times out is reported and does not stop them.
# GPU_CHECK_RACECHECK_GATES=0 keeps racecheck's findings in the summary without stopping the
# benchmarks: for a rerun, should its report turn out to concern Triton's own pipelining.
# Without a GPU the script says so, runs the CPU-side checks (the kernels compiled for sm_90 and
# sm_80 as real launches specialise them; the sanitizer's workload under Triton's interpreter),
# marks the GPU stages skipped and exits 0 when those checks pass.
set -uo pipefail

cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-bench/results/gpu-check-$(date +%Y%m%d-%H%M%S)}}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
PY="${PYTHON:-python3}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-540}"      # stages end by then; 10 minutes leaves the margin
START=$(date +%s)
: > "$OUTDIR/status.txt"
: > "$OUTDIR/gpu_check.log"

elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[gpu_check +$(elapsed)s] $*" | tee -a "$OUTDIR/gpu_check.log" >&2; }
mark() { echo "$1 $2" >> "$OUTDIR/status.txt"; }

# stage NAME LIMIT_S CMD...: run CMD with a timeout (cut to the time left), tee its log; sets RC
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET_S - $(elapsed) ))
    if (( limit > left )); then limit=$left; fi
    if (( limit < 20 )); then
        log "skip $name: ${left}s left"
        mark "$name" "skipped (out of time)"
        RC=skipped
        return 0
    fi
    log "start $name (timeout ${limit}s): $*"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUTDIR/$name.log"
    RC=${PIPESTATUS[0]}
    log "end $name: exit $RC"
    mark "$name" "$RC"
    return 0
}

finish() {
    "$PY" -m bench.gpu.summary "$OUTDIR" "$1" >&2
    log "done in $(elapsed)s"
}

GPU_STAGES="memcheck racecheck tests ceilings bench_w2 bench_w1_L1001 bench_w1_L251_501"

if ! "$PY" -c "import torch" 2>/dev/null; then
    log "$PY cannot import torch: set PYTHON to the interpreter that has it"
    exit 2
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "NO GPU: torch sees no CUDA device here. Running the CPU-side checks only; every GPU" \
        "stage ($GPU_STAGES) is skipped."
    stage compile_check 400 "$PY" -m bench.gpu.compile_check --arch 90,80 --configs first \
        --json "$OUTDIR/compile_check.json"
    cpu_rc=$RC
    # the interpreter is slow: one precision (bf16, the default) on a short clip
    stage sanitize_workload_interpreted 300 env TRITON_INTERPRET=1 "$PY" -m bench.gpu.sanitize \
        --samples 500 --precisions bf16
    [[ $cpu_rc == 0 ]] && cpu_rc=$RC
    for name in $GPU_STAGES; do mark "$name" "skipped (no GPU)"; done
    finish "NO GPU: CPU-side checks only"
    [[ $cpu_rc == 0 ]] && exit 0
    exit 1
fi

SAN="$(command -v compute-sanitizer || true)"
for candidate in /usr/local/cuda/bin/compute-sanitizer \
                 /usr/local/cuda/compute-sanitizer/compute-sanitizer \
                 /opt/nvidia/compute-sanitizer/compute-sanitizer; do
    if [[ -z "$SAN" && -x "$candidate" ]]; then SAN="$candidate"; fi
done

stage env 30 bash -c "nvidia-smi; echo 'compute-sanitizer: ${SAN:-NOT FOUND}'; \
${SAN:+$SAN --version | tail -2;} $PY - <<'EOF'
import importlib.metadata as md, platform, torch
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
for name in ('triton', 'numpy', 'pytest'):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, 'MISSING')
print('device', torch.cuda.get_device_name())
EOF
git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -30"

# sanitize TOOL: run the workload under compute-sanitizer; returns 1 only for a finding
sanitize() {
    local tool=$1
    if [[ -z "$SAN" ]]; then
        mark "$tool" "skipped (compute-sanitizer not found)"
        return 0
    fi
    # without the caching allocator every tensor is its own allocation, so an access past a
    # buffer's end is outside any allocation and memcheck sees it
    stage "$tool" 150 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SAN" --tool "$tool" \
        --error-exitcode 86 "$PY" -m bench.gpu.sanitize --samples 4001
    if [[ $RC == 0 || $RC == skipped || $RC == 124 || $RC == 137 ]]; then
        return 0
    fi
    if grep -q -i "device not supported\|unable to \(initialize\|start\)" "$OUTDIR/$tool.log" \
        && ! grep -q "ERROR SUMMARY: [1-9]\|RACECHECK SUMMARY: [1-9]" "$OUTDIR/$tool.log"; then
        sed -i "s/^$tool $RC\$/$tool unavailable (the sanitizer refused the device, exit $RC)/" \
            "$OUTDIR/status.txt"
        return 0
    fi
    return 1
}

found=0
sanitize memcheck || found=1
if ! sanitize racecheck; then
    if [[ "${GPU_CHECK_RACECHECK_GATES:-1}" == 1 ]]; then
        found=1
    else
        log "racecheck reported hazards; GPU_CHECK_RACECHECK_GATES=0: the benchmarks run anyway"
    fi
fi

stage tests 180 "$PY" -m pytest tests/sincfb/test_triton_cuda.py -v -s -p no:cacheprovider \
    --junitxml="$OUTDIR/tests.xml"

if (( found )); then
    log "the sanitizer found errors (memcheck.log / racecheck.log): the benchmarks are not run"
    for name in ceilings bench_w2 bench_w1_L1001 bench_w1_L251_501; do
        mark "$name" "skipped (sanitizer errors)"
    done
    finish "STOPPED: the sanitizer found errors"
    exit 1
fi

stage ceilings 45 "$PY" -m bench.gpu.ceilings --out "$OUTDIR/ceilings.json"

# The targets first, each in its own run (the harness writes its JSON at the end of a run).
stage bench_w2 150 "$PY" -m bench --size paper --workloads W2 --modes forward+backward \
    --backends triton --out "$OUTDIR/bench_w2.json"

stage bench_w1_L1001 100 "$PY" -m bench --size paper --workloads W1 --lengths 1001 \
    --modes forward,forward+backward --backends triton --out "$OUTDIR/bench_w1_L1001.json"

# the other two lengths, forward only and without the compiled baseline (its compile is slow)
stage bench_w1_L251_501 60 "$PY" -m bench --size paper --workloads W1 --lengths 251,501 \
    --modes forward --backends triton --no-compile --out "$OUTDIR/bench_w1_L251_501.json"

finish ""
ls -l "$OUTDIR" >&2
