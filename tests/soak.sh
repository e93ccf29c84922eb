#!/usr/bin/env bash
# The nemesis soak (issue 14): builds the node (with the test-only fault options) and
# the soak runner, then runs random fault schedules on five-node clusters in network
# namespaces. Needs root, `ip` and `iptables`. Arguments go to the runner:
#   bash tests/soak.sh --minutes 60
#   bash tests/soak.sh --schedules 5 --seed 42
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/debug/soak" "$@"
