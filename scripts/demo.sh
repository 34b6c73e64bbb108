#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the main job on the embedded default site.
# Extra arguments go to `reid-pipe run`, e.g. `scripts/demo.sh --max-frames 100`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec target/release/reid-pipe run config/site.toml "$@"
