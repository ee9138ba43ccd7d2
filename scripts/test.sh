#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --all-targets "$@"
