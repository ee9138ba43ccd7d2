#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The tests run in parallel threads and processes (test threads, the binary, the venv's
# PyTorch), each with libtorch's OpenMP team; OpenMP threads that spin while they wait slow
# oversubscribed cores down many times over. Let idle threads sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cargo test --all-targets "$@"
