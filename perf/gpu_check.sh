#!/usr/bin/env bash
# The whole GPU check as one command (run on a CUDA machine from the repo root):
#   - installs the carried wheels (diffusers, torch-fidelity, mlxtend, ...) into /tmp/site,
#   - runs the GPU-marked tests,
#   - runs the quick and full tiers on cuda (all methods, or $QUICK_METHODS / $FULL_METHODS),
#   - prints the leaderboards last.
# Wheels: see the device README's `.whl` + `carry` recipe; the command expects them in ./.whl.
set -uo pipefail
RES=/tmp/ub-gpu-results
mkdir -p "$RES"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 UNLEARNBENCH_CACHE=/tmp/ub-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, torch_fidelity; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
python3 -m pytest -q -m gpu tests/integration/test_gpu.py -p no:cacheprovider 2>&1 | tail -5
start=$SECONDS
python3 -m benchmark.cli run --tier quick --device cuda --no-progress --out "$RES/quick" \
  ${QUICK_METHODS:+--methods "$QUICK_METHODS"} > "$RES/quick.log" 2>&1
echo "quick tier exit $? wall $((SECONDS - start)) s"
start=$SECONDS
python3 -m benchmark.cli run --tier full --device cuda --no-progress --out "$RES/full" \
  ${FULL_METHODS:+--methods "$FULL_METHODS"} > "$RES/full.log" 2>&1
echo "full tier exit $? wall $((SECONDS - start)) s"
grep -h "^\[" "$RES/quick.log" "$RES/full.log"
python3 -m benchmark.cli leaderboard "$RES/quick" --no-write
python3 -m benchmark.cli leaderboard "$RES/full" --no-write
[ -n "${OUT:-}" ] && tar czf "$OUT/gpu-results.tgz" -C "$RES" . && echo "records in gpu-results.tgz"
