#!/usr/bin/env bash
# Large-scale figures on a GPU machine, with binaries built elsewhere against the same
# PyTorch 2.11 (no Rust needed there):
#   * loader images/s of one loader thread on a generated tree of 512 JPEGs (500×375), training
#     and evaluation transforms at 224 (the CPU side of the pipeline);
#   * ResNet-50 stage-1 images/s on CUDA (batch 64, full pipeline and bare loop), fp32.
# Mixed precision (amp) and channels-last are not implemented yet, so there is no AMP figure.
# Build here first:  cargo build --release --example large_scale_bench
# Usage: scripts/gpu_large_scale.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_large_scale.sh OUT_DIR}
mkdir -p "$out"
bin=${MISLAS_BENCH_BIN:-target/release/examples/large_scale_bench}
# The rpath points at the build machine's libtorch; use this machine's PyTorch libraries.
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/nvidia-smi.txt"
# Tree in $out/tree (written on the first run), batch 64, 20 timed batches.
"$bin" "$out/tree" cuda 64 20 2>&1 | tee "$out/large_scale_cuda.txt"
echo "exit status ${PIPESTATUS[0]}" | tee -a "$out/large_scale_cuda.txt"
