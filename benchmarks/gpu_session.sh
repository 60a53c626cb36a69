#!/usr/bin/env bash
# Every GPU measurement in the README in one go (at most 9.5 minutes; the step limits add up to 535 s):
#   OUT=runs/gpu bash benchmarks/gpu_session.sh
# Dry run on a CPU (no GPU needed; the CUDA-only step exits with its one-line "needs a GPU" message):
#   CONFIG=test OUT=/tmp/gpu-dry bash benchmarks/gpu_session.sh
# 1. benchmarks.gpu_pack (first, whenever a GPU is lent: the throughput measurement): 24 random
#    cells of the cpu proxy, packed (auto workers, processes sharing the GPU) vs serial, in the
#    same run; writes $OUT/gpu_pack-$CONFIG.json (it also builds the scenes and feature cache);
# 2. benchmarks.gpu_proxy at the paper config: seconds per paper-scale candidate (scaled to 30k steps);
# 3. one evaluation of the weak cell (proxy.evaluate, the README's example output);
# 4. benchmarks.study collect: the proxy-vs-full study's next evaluations, 4 worker processes sharing
#    the GPU (the H200 trained 4 full-cpu cells side by side at ~92 s each; resumes the committed records);
# 5. analysis.fullstudy: its result so far;
# 6. DPC-Bench collection for what is left (benchmarks.bench collect, 4 workers).
# Each step has a time limit so that the later ones still run; every step is resumable, and
# gpu_pack rewrites its JSON after each pass (a cut run keeps the cells that finished).
set -u
OUT=${OUT:-runs/gpu}
CONFIG=${CONFIG:-cpu}    # CONFIG=test: a quick dry run of the commands on the CPU
PY=${PYTHON:-python3}
if [ "$CONFIG" = test ]; then  # the dry run packs 2 CPU workers, whatever the machine has
    PACK_ARGS=(--device cpu --cells 4 --workers 2)
else
    PACK_ARGS=(--device cuda --cells "${PACK_CELLS:-24}" --workers "${PACK_WORKERS:-auto}")
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=30
step() {  # step NAME SECONDS COMMAND...: log to $OUT/NAME.log, keep going on failure
    local name=$1 limit=$2
    shift 2
    echo "== $(date +%T) $name: $*"
    local start=$SECONDS
    timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s"
    grep -v '^\s*$' "$OUT/$name.log" | tr '\r' '\n' | grep -v '%|' | tail -n 45
}
nvidia-smi -L
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
step gpu_pack 200 "$PY" -m benchmarks.gpu_pack --config "$CONFIG" "${PACK_ARGS[@]}" --out "$OUT"
step gpu_proxy_paper 100 "$PY" -m benchmarks.gpu_proxy --config paper --cells 0
step prepare 25 "$PY" -m proxy.evaluate weak --config "$CONFIG"  # the cache is built: one evaluation
# 4-5. the proxy-vs-full study: its missing (cell, task, seed)s, resumed from the committed records
#      (copy study/records in first; copy $OUT/study-records/* back into study/records and commit them)
#      The GPU-sized full task takes the CPU-sized study's cells (--plan-from), so the two full tasks
#      can be compared on the cells both have (analysis.fullstudy --versus); its proxy evaluations
#      are DPC-Bench records of this device (in $OUT/bench-records, with the bench's own).
cp -r study/records "$OUT/study-records" 2>/dev/null || mkdir -p "$OUT/study-records"
cp -r bench/records "$OUT/bench-records" 2>/dev/null || mkdir -p "$OUT/bench-records"
PLAN=$(ls study/records/full-cpu-frozen-*/plan.json 2>/dev/null | head -n 1)
if [ -n "$PLAN" ]; then STUDY_CELLS=(--cells 0 --plan-from "$PLAN" --first full); else STUDY_CELLS=(); fi
step study 165 "$PY" -m benchmarks.study collect --config "$CONFIG" --full-config "$CONFIG" --hours 0.04 \
    --workers "${STUDY_WORKERS:-4}" "${STUDY_CELLS[@]}" --data "$OUT/study-records" --bench "$OUT/bench-records"
for d in "$OUT"/study-records/*/; do
    case "$d" in *-frozen-*) continue ;; esac
    "$PY" -m analysis.fullstudy --data "$d" ${PLAN:+--versus "$(dirname "$PLAN")"} --n-resamples 500 2>/dev/null | grep -E "^(full tasks|cells|spearman|best)"
done
# 6. DPC-Bench records from the GPU's last seconds (their own directory: the hash has the device type);
#    copy $OUT/bench-records/* into bench/records/ and commit them (the CPU directories come back unchanged)
step bench 45 "$PY" -m benchmarks.bench collect --config "$CONFIG" --workers 4 --hours 0.01 --seed "$(date +%s)" \
    --data "$OUT/bench-records" --quiet
rm -rf "$OUT"/*.dpc-lock
ls -la "$OUT"
