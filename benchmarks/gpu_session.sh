#!/usr/bin/env bash
# Every GPU measurement in the README in one go (about 9 minutes on one H200):
#   OUT=runs/gpu bash benchmarks/gpu_session.sh
# 1. the default scenes and the Lite0 feature cache;
# 2. benchmarks.gpu_proxy at the paper config (candidates/hour) and the zoo at the cpu config;
# 3. benchmarks.compare on the cpu proxy (4 strategies x 2 seeds x 12 evaluations);
# 4. analysis.correlate: the top 4 and 4 random cells of that comparison on the full task.
# Each step has a time limit so that the later ones still run; every step is resumable.
set -u
OUT=${OUT:-runs/gpu}
CONFIG=${CONFIG:-cpu}    # CONFIG=test PRESET=test: a quick dry run of the commands on the CPU
PRESET=${PRESET:-default}
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
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
step scenes 150 python3 -m proxy.data info --preset "$PRESET"
step gpu_proxy_paper 150 python3 -m benchmarks.gpu_proxy --config paper --cells 1
step gpu_proxy_cpu 60 python3 -m benchmarks.gpu_proxy --config "$CONFIG" --cells 0 --seeds 2
step compare 240 python3 -m benchmarks.compare --objective proxy --config "$CONFIG" --seeds 2 --budget 12 \
    --population 4 --tournament 2 --tpe-startup 4 --top-k 3 --workers 4 -q \
    --storage "$OUT/compare.journal" --out "$OUT/compare"
step correlate 200 python3 -m analysis.correlate --storage "$OUT/compare.journal" --experiment "compare-proxy-$CONFIG" \
    --top 4 --random 4 --objective full --config "$CONFIG" --workers 2 --no-progress --out "$OUT/correlation"
tar czf "$OUT/figures.tgz" -C "$OUT" compare correlation 2>/dev/null
rm -rf "$OUT/compare" "$OUT/correlation"
ls -la "$OUT"
