#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite with its quality gates.
# This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy"
# --release shares the build with the binary and the tests (one build of the heavy crates, not two).
cargo clippy --release --locked --all-targets -- -D warnings
echo "[test] cargo test"
cargo test --release --locked --no-fail-fast
