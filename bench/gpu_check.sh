#!/usr/bin/env bash
# The prepared GPU run of issue 3: GPU tests of the 'triton' backend, then the W1/W2 benchmarks
# (DESIGN.md §6) against the naive baselines, all within about 8 minutes on one H100/H200.
#
#   bash bench/gpu_check.sh [OUTDIR]
#
# OUTDIR defaults to $OUT, else bench/results/gpu-check-<date>.
#
# Needs only what the device machines have preinstalled (torch 2.11, triton 3.6, torchaudio 2.11,
# torchvision 0.26, pytest, numpy): nothing is installed, nothing is downloaded, soundfile is not
# used. Runs from the repository root with PYTHONPATH=. (set here). Every stage has its own timeout
# and log; a failing stage does not stop the later ones. Writes into OUTDIR:
#   env.log               nvidia-smi, versions
#   tests.log, tests.xml  tests/sincfb/test_triton_cuda.py (-s: prints per-case errors)
#   ceilings.json/.log    measured bf16/tf32 matmul rates and copy bandwidth
#   bench_w2.json/.log    W2 forward+backward, naive-fp32 / naive-bf16-compile / sincfb-triton
#   bench_w1_L1001.json   W1 at L=1001, forward and forward+backward (the TFLOP/s target)
#   bench_w1_L251_501.json  W1 forward at L=251 and 501 vs naive-fp32, if time is left
#   compile_check.json    registers/spills/wgmma of every kernel config, if time is left
# (`python -m bench --size paper` in one piece takes longer than the 8 minutes: it is split into
# the runs above, each with its own JSON, and restricted to the triton backend.)
#   status.txt            one line per stage: name and exit code (124 = timed out)
set -uo pipefail

cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-bench/results/gpu-check-$(date +%Y%m%d-%H%M%S)}}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET
PY="${PYTHON:-python}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-470}"      # leaves a margin under 8 minutes
START=$(date +%s)
: > "$OUTDIR/status.txt"

elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[gpu_check +$(elapsed)s] $*" | tee -a "$OUTDIR/gpu_check.log" >&2; }

# stage NAME LIMIT_S CMD...: run CMD with a timeout (cut to the time left), tee its log
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET_S - $(elapsed) ))
    if (( limit > left )); then limit=$left; fi
    if (( limit < 20 )); then
        log "skip $name: ${left}s left"
        echo "$name skipped" >> "$OUTDIR/status.txt"
        return 0
    fi
    log "start $name (timeout ${limit}s): $*"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUTDIR/$name.log"
    local rc=${PIPESTATUS[0]}
    log "end $name: exit $rc"
    echo "$name $rc" >> "$OUTDIR/status.txt"
    return 0
}

stage env 30 bash -c "nvidia-smi; $PY - <<'EOF'
import importlib.metadata as md, platform, torch
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
for name in ('triton', 'torchaudio', 'torchvision', 'numpy', 'pytest'):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, 'MISSING')
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')
EOF
git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -30"

stage tests 210 "$PY" -m pytest tests/sincfb/test_triton_cuda.py -v -s -p no:cacheprovider \
    --junitxml="$OUTDIR/tests.xml"

stage ceilings 45 "$PY" -m bench.gpu.ceilings --out "$OUTDIR/ceilings.json"

# The targets first, each in its own run (the harness writes its JSON at the end of a run).
stage bench_w2 180 "$PY" -m bench --size paper --workloads W2 --modes forward+backward \
    --backends triton --out "$OUTDIR/bench_w2.json"

stage bench_w1_L1001 120 "$PY" -m bench --size paper --workloads W1 --lengths 1001 \
    --modes forward,forward+backward --backends triton --out "$OUTDIR/bench_w1_L1001.json"

# the other two lengths, forward only and without the compiled baseline (its compile is slow)
stage bench_w1_L251_501 90 "$PY" -m bench --size paper --workloads W1 --lengths 251,501 \
    --modes forward --backends triton --no-compile --out "$OUTDIR/bench_w1_L251_501.json"

stage compile_check 40 "$PY" -m bench.gpu.compile_check --json "$OUTDIR/compile_check.json"

log "done in $(elapsed)s; stages:"
cat "$OUTDIR/status.txt" >&2
ls -l "$OUTDIR" >&2
