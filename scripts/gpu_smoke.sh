#!/usr/bin/env bash
# CUDA smoke run and figures on a GPU machine, with a mislas binary built elsewhere against the
# same PyTorch 2.11: the CUDA throughput benchmark, then the default Fashion-MNIST-LT pipeline
# on CUDA. Usage: scripts/gpu_smoke.sh OUT_DIR [DATA_PATH]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_smoke.sh OUT_DIR [DATA_PATH]}
data=${2:-/usr/share/datasets/fashion-mnist}
mkdir -p "$out"
bin=${MISLAS_BIN:-target/release/mislas}
# The rpath points at the build machine's libtorch; use this machine's PyTorch libraries.
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt"
workers=$(( $(nproc) > 8 ? 8 : $(nproc) ))
"$bin" bench --batches 200 data_path "$data" device cuda workers "$workers" 2>&1 | tee "$out/bench_cuda.txt"
"$bin" --saved "$out/saved" pipeline data_path "$data" device cuda workers "$workers" \
  > "$out/pipeline_cuda.txt" 2>&1
echo "pipeline exit status $?" | tee -a "$out/pipeline_cuda.txt"
grep -E "Best Prec@1|finished|error" "$out/pipeline_cuda.txt" | tail -4
