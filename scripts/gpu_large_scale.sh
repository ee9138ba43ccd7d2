#!/usr/bin/env bash
# Large-scale figures on a GPU machine, with binaries built elsewhere against the same
# PyTorch 2.11 (no Rust needed there):
#   * loader images/s of one loader thread on a generated tree of 512 JPEGs (500×375), training
#     and evaluation transforms at 224 (the CPU side of the pipeline);
#   * ResNet-50 stage-1 images/s on CUDA (full pipeline and bare loop) at batch 64 and 256, in
#     fp32 and with mixed precision (amp, then amp + channels-last), and PyTorch's bare step on
#     the same settings (scripts/bench_resnet50_torch.py) for the images/s and memory it needs.
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
# Tree in $out/tree (written on the first run), 20 timed batches per setting.
for batch in 64 256; do
  for setting in "amp false" "amp true" "amp true channels_last true"; do
    echo "== batch $batch, $setting" | tee -a "$out/large_scale_cuda.txt"
    # shellcheck disable=SC2086
    "$bin" "$out/tree" cuda "$batch" 20 $setting 2>&1 | tee -a "$out/large_scale_cuda.txt"
    echo "exit status ${PIPESTATUS[0]}" | tee -a "$out/large_scale_cuda.txt"
  done
  for flags in "0 0" "1 0" "1 1"; do
    # shellcheck disable=SC2086
    python3 scripts/bench_resnet50_torch.py "$batch" 20 cuda $flags 2>&1 | tee -a "$out/large_scale_cuda.txt"
  done
done
