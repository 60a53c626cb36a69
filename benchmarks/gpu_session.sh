#!/usr/bin/env bash
# Every GPU measurement in the README in one go (at most 9.5 minutes; the step limits add up to that):
#   OUT=runs/gpu bash benchmarks/gpu_session.sh
# 1. the default scenes and the Lite0 feature cache (and one evaluation);
# 2. benchmarks.compare on the cpu proxy (4 strategies x 2 seeds x 12 evaluations);
# 3. analysis.correlate: the top 4 and 4 random cells of that comparison on the full task;
# 4. benchmarks.gpu_proxy: the zoo at the cpu config, then at the paper config (candidates/hour).
# Each step has a time limit so that the later ones still run; every step is resumable.
set -u
OUT=${OUT:-runs/gpu}
CONFIG=${CONFIG:-cpu}    # CONFIG=test: a quick dry run of the commands on the CPU
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
step() {  # step NAME SECONDS COMMAND...: log to $OUT/NAME.log, keep going on failure
    local name=$1 limit=$2
    shift 2
    echo "== $(date +%T) $name: $*"
    local start=$SECONDS
    timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s"
    grep -v '^\s*$' "$OUT/$name.log" | tr '\r' '\n' | grep -v '%|' | tail -n 40
}
nvidia-smi -L
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step prepare 90 "$PY" -m proxy.evaluate weak --config "$CONFIG"  # scenes, feature cache, one evaluation
step compare 190 "$PY" -m benchmarks.compare --objective proxy --config "$CONFIG" --seeds 2 --budget 12 \
    --population 4 --tournament 2 --tpe-startup 4 --top-k 3 --workers 4 -q \
    --storage "$OUT/compare.journal" --out "$OUT/compare"
step correlate 150 "$PY" -m analysis.correlate --storage "$OUT/compare.journal" --experiment "compare-proxy-$CONFIG" \
    --top 4 --random 4 --objective full --config "$CONFIG" --workers 4 --no-progress --out "$OUT/correlation"
step gpu_proxy_cpu 45 "$PY" -m benchmarks.gpu_proxy --config "$CONFIG" --cells 0 --seeds 2
step gpu_proxy_paper 100 "$PY" -m benchmarks.gpu_proxy --config paper --cells 0
tar czf "$OUT/figures.tgz" -C "$OUT" compare correlation 2>/dev/null
rm -rf "$OUT/compare" "$OUT/correlation" "$OUT"/*.dpc-lock
ls -la "$OUT"
