#!/usr/bin/env bash
# Issue 17's GPU check as one prepared command for a lent GPU machine (the `device` tool):
# the GPU-only tests, then trials packed on the GPU at the paper grid's batch of 100.
#
#   bash bench/gpu_wheels.sh        # here, once: the wheels into .whl/
#   run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=570)
#
# The machine has PyTorch, Lightning and torchmetrics but no network: the other packages a
# trial needs travel as wheels in .whl/ (bench/gpu_wheels.sh). Ray's wheel (79 MB) is over
# the 64 MiB that travels, so the test that runs a sweep through Ray skips there.
# Everything written lands in $OUT.
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheels did not install"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 SPECSWEEP_CACHE=/tmp/specsweep-cache WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$OUT/gpu.txt"

timeout 180 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.txt"

left=$(( 540 - ($(date +%s) - start) ))
timeout $(( left > 60 ? left : 60 )) python3 -m bench.gpu_packing --budget-s $(( left > 90 ? left - 60 : 30 )) \
  --only p1-device-compiled,p16-device-compiled,p1-device,p8-device-compiled \
  --json "$OUT/gpu_packing.json" --out "$OUT/gpu_packing.md" 2>&1 | tee "$OUT/gpu_packing.log"
echo "session wall time $(( $(date +%s) - start )) s"
