#!/usr/bin/env bash
# The gradient all-reduce overlapped with the backward pass (`ddp_overlap true`, the default)
# against the all-reduce after it (`ddp_overlap false`), beside one process on the same cores
# (issue 22, "Scaling efficiency"): Fashion-MNIST-LT stage 1, one epoch, global batch 128,
# evaluation batch 500, on CPU.
#
# Setups, run in this order every round (ROUNDS rounds, alternated):
#   1p         one process, libtorch's default threads (one per core)
#   2r-after   2 Gloo ranks, ddp_overlap false      2r-overlap   the same, ddp_overlap true
#   4r-after   4 Gloo ranks, ddp_overlap false      4r-overlap   the same, ddp_overlap true
# The ranks are started by this script with a torchrun-style environment (RANK, WORLD_SIZE,
# LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), 2 and 4 alike: mislas refuses more
# CPU ranks than cores when it starts them itself (`gpus N`), not ranks a launcher started, so
# 4 ranks on 2 cores run oversubscribed (mislas gives each rank cores/LOCAL_WORLD_SIZE threads,
# at least 1). Each rank's output is in OUT_DIR/<setup>-r<round>/rank<R>.txt.
#
# Figures per run: wall seconds of the whole run (from the first process started to the last
# ended: start-up, rendezvous, the epoch, the evaluation, the checkpoints), images/s of the whole
# run (the epoch's training images / wall seconds), images/s of the training loop
# (metrics.jsonl), the all-reduce's share of the training time (rank 0's log line
# `=> epoch 0: gradient all-reduce …`: what the steps waited for it after the backward pass), and
# the load average when the run started.
#
# Usage: scripts/ddp_overlap_bench.sh OUT_DIR [ROUNDS] [DATA_PATH]
#   MISLAS_BIN (default target/debug/mislas: build it first with `cargo build`)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/ddp_overlap_bench.sh OUT_DIR [ROUNDS] [DATA_PATH]}
rounds=${2:-2}
data=${3:-/usr/share/datasets/fashion-mnist}
bin=${MISLAS_BIN:-target/debug/mislas}
export OMP_WAIT_POLICY=PASSIVE
preset=presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml
common=(num_epochs 1 warmup_epochs 1 device cpu eval_batch_size 500 print_freq 0
  data_path "$data")
mkdir -p "$out"
uptime | tee "$out/uptime-start.txt"
nproc | sed 's/^/cores: /' | tee -a "$out/uptime-start.txt"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run SETUP RANKS OVERLAP ROUND
run() {
  local setup=$1 n=$2 overlap=$3 round=$4
  local dir="$out/$setup-r$round"
  rm -rf "$dir"
  mkdir -p "$dir"
  cut -d' ' -f1-3 /proc/loadavg > "$dir/load.txt"
  local started ended
  started=$(date +%s.%N)
  if [ "$n" = 1 ]; then
    "$bin" --saved "$dir/saved" train --cfg "$preset" "${common[@]}" \
      > "$dir/rank0.txt" 2> "$dir/rank0.err"
  else
    local port pids=() r
    port=$(free_port)
    for r in $(seq 0 $((n - 1))); do
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 \
        MASTER_PORT=$port "$bin" --saved "$dir/saved" train --cfg "$preset" "${common[@]}" \
        ddp_overlap "$overlap" > "$dir/rank$r.txt" 2> "$dir/rank$r.err" &
      pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r"; done
  fi
  ended=$(date +%s.%N)
  echo "$started $ended" > "$dir/wall.txt"
  python3 - "$dir" "$setup" "$round" <<'EOF'
import glob, json, re, sys
d, setup, rnd = sys.argv[1:4]
t0, t1 = map(float, open(f"{d}/wall.txt").read().split())
wall = t1 - t0
m = json.loads(open(glob.glob(f"{d}/saved/*/metrics.jsonl")[0]).readline())
images = round(m["images_per_sec"] * m["train_seconds"])
log = open(f"{d}/rank0.txt").read()
share = re.search(r"gradient all-reduce ([\d.]+) s of ([\d.]+) s training \(([\d.]+) %\)", log)
share = f"{share.group(3)} % ({share.group(1)} of {share.group(2)} s)" if share else "-"
load = open(f"{d}/load.txt").read().strip()
print(f"{setup}\tround {rnd}\twall {wall:.1f} s\twhole run {images / wall:.0f} images/s\t"
      f"training loop {m['images_per_sec']:.0f} images/s\tall-reduce {share}\t"
      f"{images} images\tload {load}", flush=True)
EOF
}

for round in $(seq 1 "$rounds"); do
  run 1p 1 true "$round"
  run 2r-after 2 false "$round"
  run 2r-overlap 2 true "$round"
  run 4r-after 4 false "$round"
  run 4r-overlap 4 true "$round"
done 2>&1 | tee "$out/summary.tsv"
uptime | tee "$out/uptime-end.txt"
