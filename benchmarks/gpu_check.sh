#!/usr/bin/env bash
# The prepared GPU check (issue 10, item 6): at most 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh [OUT_DIR]              # on a CUDA machine; OUT_DIR default $OUT, else gpu_check_out/
#   benchmarks/gpu_check.sh --dry-run [OUT_DIR]    # the same stages on the CPU with tiny sizes (checks the script)
#
# Stages, each under its own `timeout` (the limits add up to less than 8 minutes, and each is cut
# further to what is left of the budget):
#   1. env      the device, driver, torch/CUDA versions                              -> env.txt
#   2. tests    the CUDA-only tests (those skipped elsewhere with "needs a CUDA device"), which
#               must all run here: a skip counts as a failure on a GPU
#   3. bench    benchmarks/train_throughput.py, bf16 autocast + channels_last         -> bench_bf16_cl.json
#   4. compile  the same with torch.compile                                           -> bench_bf16_cl_compile.json
#   5. sweep    (d) sweep throughput, 1, 2, 4 VGG38 cells at once                     -> sweep.json
#   6. table    the Markdown table for docs/performance.md (printed, and table.md)
# Everything printed also goes to gpu_check.log. At most 6 files are written (the device tool
# returns at most 8). Python: $PYTHON, else python3; the package is used from this checkout.
set -u
cd "$(dirname "$0")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT_DIR=${1:-${OUT:-gpu_check_out}}
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-470}   # seconds for all stages; 8 minutes = 480
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
START=$(date +%s)

if [ "$DRY" = 1 ]; then
    DEV=(--device cpu --quick --threads 1)
    SWEEP=(--sweep-model vgg08 --sweep-k 1 2)
else
    DEV=(--device cuda --amp --channels-last)
    SWEEP=(--sweep-model vgg38 --sweep-k 1 2 4)
fi

declare -A RC
say() { echo "$@" | tee -a "$LOG"; }

# stage NAME LIMIT_SECONDS COMMAND...: run it under timeout, within what is left of the budget.
stage() {
    local name=$1 limit=$2 left rc t0
    shift 2
    left=$((BUDGET - ($(date +%s) - START) - 10))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -le 5 ]; then
        say "== $name: not run (budget spent)"; RC[$name]=budget; return
    fi
    say "== $name (limit ${limit} s): $*"
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && rc=timeout
    RC[$name]=$rc
    say "== $name: exit $rc after $(($(date +%s) - t0)) s"
}

# 1. env
stage env 45 "$PY" -c '
import platform, torch
print("date", __import__("time").strftime("%Y-%m-%d %H:%M UTC", __import__("time").gmtime()))
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", torch.cuda.get_device_name(0), f"{p.total_memory / 2**30:.0f} GiB", f"sm_{p.major}{p.minor}",
          "bf16", torch.cuda.is_bf16_supported())
else:
    print("device", platform.processor() or platform.machine(), "CPU (no CUDA device: dry run)")
'
{ cat "$LOG"; nvidia-smi 2>/dev/null || echo "nvidia-smi: not available"; } >"$OUT_DIR/env.txt"

# 2. the CUDA-only tests, found by their skip reason so that new ones join automatically
TESTS=$(grep -A3 -n 'needs a CUDA device' tests/test_*.py |
        sed -n 's/^\(tests\/[a-z0-9_]*\.py\)-[0-9]*-def \(test_[A-Za-z0-9_]*\).*/\1::\2/p' | sort -u | tr '\n' ' ')
say "CUDA-only tests: ${TESTS:-none found}"
if [ -n "$TESTS" ]; then
    # shellcheck disable=SC2086
    stage tests 60 "$PY" -m pytest -q -rs -p no:cacheprovider $TESTS
    if [ "${RC[tests]}" = 0 ] && grep -q "skipped" "$LOG"; then
        if [ "$DRY" = 1 ]; then RC[tests]="skipped (no CUDA: dry run)"; else RC[tests]="skipped on a GPU: failure"; fi
    fi
fi

# 3. and 4. the benchmark, bf16 + channels_last, without and with torch.compile
stage bench 100 "$PY" benchmarks/train_throughput.py "${DEV[@]}" --sweep-k --json "$OUT_DIR/bench_bf16_cl.json"
stage compile 140 "$PY" benchmarks/train_throughput.py "${DEV[@]}" --compile --rounds 5 --sweep-k \
    --json "$OUT_DIR/bench_bf16_cl_compile.json"

# 5. sweep throughput
stage sweep 140 "$PY" benchmarks/train_throughput.py "${DEV[@]}" --sweep-only "${SWEEP[@]}" --json "$OUT_DIR/sweep.json"

# 6. the table for docs/performance.md
STATUS=""
for s in env tests bench compile sweep; do STATUS="$STATUS$s: ${RC[$s]:-not run}; "; done
"$PY" - "$OUT_DIR" "$STATUS" "$DRY" <<'EOF' | tee "$OUT_DIR/table.md" | tee -a "$LOG"
import json, sys
from pathlib import Path

sys.path.insert(0, "benchmarks")
from train_throughput import results_table, sweep_table  # noqa: E402

out, status, dry = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
env = (out / "env.txt").read_text().splitlines()
device = next((line[7:] for line in env if line.startswith("device ")), "unknown device")
date = next((line[5:] for line in env if line.startswith("date ")), "")
print(f"### {'CPU DRY RUN (not a GPU result): ' if dry else ''}{device}, {date}\n")
print(f"Stages: {status.strip()}\n")
for name, title in (("bench_bf16_cl.json", "bf16 autocast + channels_last"),
                    ("bench_bf16_cl_compile.json", "bf16 autocast + channels_last + torch.compile")):
    path = out / name
    if not path.is_file():
        print(f"**{title}**: no result (see gpu_check.log)\n")
        continue
    r = json.loads(path.read_text())
    if not r.get("complete"):
        title += " (PARTIAL: the stage was cut short)"
    print(f"**{title}** (batch {r['settings']['batch_size']}, {r['settings']['warmup']} warm-up + "
          f"{r['settings']['rounds']} rounds; images/s, median (IQR)); torch {r['torch']}\n")
    print(results_table(r["results"]))
    for row in r["results"]:
        checks = [f"fit/bare {row['fit_over_bare']:.3f} (target >= 0.9: {'met' if row['fit_over_bare'] >= 0.9 else 'NOT met'})"]
        if row["fit_over_customary"] == row["fit_over_customary"]:
            met = "met" if row["fit_over_customary"] >= 3 else "NOT met"
            checks.append(f"fit/customary {row['fit_over_customary']:.2f} (target >= 3: {met})")
        if row["measurement_error"]:
            checks.append("MEASUREMENT ERROR: b/a > 1.02")
        print(f"- {row['model']}: " + "; ".join(checks))
    print()
path = out / "sweep.json"
sweep = json.loads(path.read_text())["sweep"] if path.is_file() else None
if sweep and sweep.get("runs"):
    print(f"**(d) sweep throughput**, {sweep['model']}, {sweep['epochs']} epochs of {sweep['images_per_epoch']} "
          f"images per cell, engine {sweep['engine']}\n")
    print(sweep_table(sweep))
    four = [r for r in sweep["runs"] if r["k"] == 4]
    if four:
        met = "met" if four[0]["over_one_cell"] >= 2 else "NOT met"
        print(f"\n- 4 cells: {four[0]['over_one_cell']:.2f}x one cell (target >= 2x: {met})")
else:
    print(f"**(d) sweep throughput**: {sweep.get('skipped') if sweep else 'no result (see gpu_check.log)'}")
EOF
say "gpu_check: $(($(date +%s) - START)) s in all; files in $OUT_DIR: $(ls "$OUT_DIR" | tr '\n' ' ')"
