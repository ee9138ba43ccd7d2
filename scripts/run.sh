#!/usr/bin/env bash
# The main job: installs what is missing, builds the release binary and runs the default
# two-stage pipeline (Fashion-MNIST-LT, IF = 0.01) into saved/. Extra arguments are passed on as
# overrides, e.g. `scripts/run.sh stage1.num_epochs 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
exec target/release/mislas pipeline "$@"
