#!/usr/bin/env bash
# reshard.sh — doubling 4 → 8 shards under load on a 3-node loopback cluster.
#
# Loads DATA_MB of data (VALUE_KB-sized values), then runs WRITERS closed-loop writers of
# 100-byte values while the planning library splits every shard, and again while it
# balances leaders afterwards. Prints `name: value` lines (see bench/README.md):
#   reshard.split.seconds               time from the first split to the last new shard led
#   reshard.split.longest_write_ms      the longest any client write waited in that window
#   reshard.split.mean_vs_baseline      throughput in the window / throughput before it
#   reshard.split.worst_100ms_vs_baseline  the slowest 100 ms bucket / baseline
#   reshard.after_split.*               the same between the splits and the balancing
#                                       (new shards' first snapshots, leftover sweeps)
#   reshard.balance.*                   the same for the leader moves that follow
#   reshard.whole.longest_write_ms      the longest wait from the first split to the end
#   reshard.keys_checked                keys the shards hold afterwards (checked: every
#                                       loaded and written key, once)
#
# Env: DATA_MB (1024), VALUE_KB (64) or VALUE_BYTES (small values load in batches),
# WRITERS (16), BASELINE_S (5), NO_BUILD=1.
# Needs about 4 × DATA_MB of free disk under $TMPDIR (3 replicas + the split snapshots).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p ringkv-node -p ringkv-tests --bin ringkv-node --bin reshard-bench
fi
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
export RINGKV_NODE_BIN="$TARGET/release/ringkv-node"
exec "$TARGET/release/reshard-bench"
