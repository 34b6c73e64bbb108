#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite with its quality gates.
# This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy"
# --release shares the build with the binary and the tests (one build of the heavy crates, not two);
# --workspace takes in the unit tests of the crates under crates/
cargo clippy --release --locked --workspace --all-targets -- -D warnings
echo "[test] cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --locked --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary (cargo prints one result line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
