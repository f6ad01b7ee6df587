#!/usr/bin/env bash
# EraseDiff outer-step MFU on an SD-1.4-sized UNet, the whole GPU check as one command (repo root, CUDA machine):
#   bash perf/gpu_mfu.sh
# 1. installs the carried wheels into /tmp/deps (no network, no dependencies resolved) and puts it and the repo
#    on PYTHONPATH;
# 2. runs perf/sd_erasediff_mfu.py at batch 8 and 32, bf16 autocast: eager, then --compile (whole UNet);
# 3. prints one table of all rows last (rows also in $RES/rows.jsonl; logs and rows copied to $OUT if set).
#
# Wheels: the GPU image has torch, transformers, timm, huggingface_hub, regex, safetensors but not diffusers or
# open_clip (whose shipped BPE vocabulary builds the CLIP tokenizer) nor ftfy/wcwidth (open_clip imports ftfy).
# Fetch them once on a machine with pip, into ./wheels (untracked, so it travels with the working tree; or into
# the git-ignored ./.whl and name it in the run's `carry`):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d wheels diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
# Knobs (environment): MFU_RUNS="eager compile" (which runs), MFU_BATCHES="8 32", MFU_STEPS=5, MFU_WARMUP=2,
# MFU_EXTRA="" (more flags for every run, e.g. --channels-last or --fused-adam), MFU_MODEL="--device cuda --full
# --dtype bf16" (a CPU dry run: "--device cpu --tiny --dtype fp32"), MFU_EAGER_TIMEOUT=120 and
# MFU_COMPILE_TIMEOUT=400 (seconds per run; a run cut off keeps the rows it finished): ≤ 9 min 20 s in all,
# so give the device run timeout_s=600.
set -uo pipefail
RES=/tmp/ub-mfu
rm -rf "$RES" && mkdir -p "$RES"
WHEELS=wheels
[ -d "$WHEELS" ] || WHEELS=.whl
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/deps \
    "$WHEELS"/*.whl || exit 1
else
  echo "no wheels in ./wheels or ./.whl: using the installed packages"
fi
export PYTHONPATH="/tmp/deps:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null \
  || echo "no nvidia-smi"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'transformers', transformers.__version__)" || exit 1

BATCHES=${MFU_BATCHES:-8 32}
# shellcheck disable=SC2206
COMMON=(${MFU_MODEL:---device cuda --full --dtype bf16} --steps "${MFU_STEPS:-5}" --warmup "${MFU_WARMUP:-2}" --json "$RES/rows.jsonl")
for run in ${MFU_RUNS:-eager compile}; do
  case $run in
    eager) flags=(); limit=${MFU_EAGER_TIMEOUT:-120} ;;
    compile) flags=(--compile); limit=${MFU_COMPILE_TIMEOUT:-400} ;;
    blocks) flags=(--compile blocks); limit=${MFU_COMPILE_TIMEOUT:-400} ;;
    *) echo "unknown run $run (eager, compile, blocks)"; continue ;;
  esac
  start=$SECONDS
  # shellcheck disable=SC2086
  timeout "$limit" python3 perf/sd_erasediff_mfu.py "${COMMON[@]}" ${flags[@]+"${flags[@]}"} --batch $BATCHES ${MFU_EXTRA:-} \
    > "$RES/$run.log" 2>&1
  rc=$?
  grep -h "^#" "$RES/$run.log"
  [ $rc -ne 0 ] && { echo "run $run exit $rc (124 = cut off at ${limit}s); log tail:"; tail -5 "$RES/$run.log"; }
  echo "run $run: $((SECONDS - start)) s"
done
[ -n "${OUT:-}" ] && cp "$RES"/*.log "$RES"/rows.jsonl "$OUT"/ 2>/dev/null
echo
python3 perf/sd_erasediff_mfu.py --table "$RES/rows.jsonl"
