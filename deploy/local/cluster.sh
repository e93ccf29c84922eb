#!/usr/bin/env bash
# cluster.sh — run a local ringkv cluster: N ringkv-node processes on 127.0.0.1.
#
# Usage: deploy/local/cluster.sh up | join | down [--purge] | status
#
#   up      start NODES nodes, wait until every node answers /readyz, print the addresses
#   join    start one more node (the next id) that joins the running ring empty; give it
#           replicas with `ringkv-ctl ... add-node` (it prints the command)
#   down    SIGTERM the nodes this script started (pids in $DATA), SIGKILL after STOP_TIMEOUT s;
#           keeps the data unless --purge is given
#   status  per node: pid alive?, /readyz answer, shard leaders as the node sees them
#
# Env (defaults in brackets):
#   NODES [3]            cluster size
#   SHARDS [4]           shard count, a power of two
#   BASE_PORT [8080]     node i (1-based) serves HTTP on BASE_PORT+i-1, Raft on BASE_PORT+100+i-1
#   DATA [./ringkv-cluster]  state root: node-i.pid, node-i.log, node-i/ (data), cluster.env
#   BIN [${CARGO_TARGET_DIR:-<repo>/target}/debug/ringkv-node]  node binary; the default is built if missing
#   BUILD [0]            1: run `cargo build -p ringkv-node` before `up` even if the binary exists
#   READY_TIMEOUT [30]   seconds `up` waits for /readyz on every node
#   STOP_TIMEOUT [15]    seconds `down` waits after SIGTERM before SIGKILL
#   RINGKV_LOG           passed through to the nodes (tracing filter)
#
# down and status read NODES/BASE_PORT from $DATA/cluster.env written by up, so only DATA
# has to match between calls.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
HOST=127.0.0.1
BIN_NAME=ringkv-node

NODES="${NODES:-3}"
SHARDS="${SHARDS:-4}"
BASE_PORT="${BASE_PORT:-8080}"
DATA="${DATA:-$PWD/ringkv-cluster}"
READY_TIMEOUT="${READY_TIMEOUT:-30}"
STOP_TIMEOUT="${STOP_TIMEOUT:-15}"
BUILD="${BUILD:-0}"

die() { echo "cluster.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

check_numbers() {
  local v
  for v in NODES SHARDS BASE_PORT READY_TIMEOUT STOP_TIMEOUT; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
  done
  [ "$NODES" -ge 1 ] || die "NODES must be >= 1"
  if [ "$BASE_PORT" -lt 1 ] || [ $((BASE_PORT + 100 + NODES - 1)) -gt 65535 ]; then
    die "BASE_PORT $BASE_PORT out of range"
  fi
}

# Absolute DATA so the pid files and the nodes' --data-dir agree whatever the caller's cwd.
abs_data() {
  case "$DATA" in
    /*) ;;
    *) DATA="$PWD/$DATA" ;;
  esac
  DATA="${DATA%/}"
  [ -n "$DATA" ] || die "DATA must not be /"
}

http_port() { echo $((BASE_PORT + $1 - 1)); }
raft_port() { echo $((BASE_PORT + 100 + $1 - 1)); }
pid_file() { echo "$DATA/node-$1.pid"; }
log_file() { echo "$DATA/node-$1.log"; }
node_dir() { echo "$DATA/node-$1"; }

# Reads NODES, SHARDS, BASE_PORT saved by `up` (plain KEY=number lines; not sourced).
load_env() {
  local f="$DATA/cluster.env" k v
  [ -f "$f" ] || return 0
  while IFS='=' read -r k v; do
    case "$k" in
      NODES | SHARDS | BASE_PORT | FOUNDERS) is_uint "$v" && printf -v "$k" '%s' "$v" ;;
    esac
  done <"$f"
}

save_env() {
  printf 'NODES=%s\nSHARDS=%s\nBASE_PORT=%s\nFOUNDERS=%s\n' "$NODES" "$SHARDS" "$BASE_PORT" "$FOUNDERS" >"$DATA/cluster.env"
}

# start_node N PEERS: starts node N in the background, records its pid.
start_node() {
  local n="$1" peers="$2"
  mkdir -p "$(node_dir "$n")"
  echo "==== $(date '+%Y-%m-%d %H:%M:%S') cluster.sh: node $n, $BIN" >>"$(log_file "$n")"
  NO_COLOR="${NO_COLOR:-1}" nohup "$BIN" --node-id "$n" \
    --listen "$HOST:$(http_port "$n")" --internal-listen "$HOST:$(raft_port "$n")" \
    --peers "$peers" --shards "$SHARDS" --data-dir "$(node_dir "$n")" \
    </dev/null >>"$(log_file "$n")" 2>&1 &
  echo "$!" >"$(pid_file "$n")"
}

# ours PID N: the pid is alive, runs ringkv-node, and was started on node N's data dir
# (guards against signalling an unrelated process that reused the pid).
ours() {
  local pid="$1" n="$2" args
  is_uint "$pid" || return 1
  [ "$pid" -gt 1 ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    args="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    printf '%s\n' "$args" | head -1 | grep -q "$BIN_NAME\$" || return 1
    printf '%s\n' "$args" | grep -Fxq -- "$(node_dir "$n")" || return 1
  else
    args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
    case "$args" in *"$BIN_NAME"*"--data-dir $(node_dir "$n")"*) ;; *) return 1 ;; esac
  fi
}

read_pid() {  # read_pid N -> pid from node-N.pid, or nothing
  local f; f="$(pid_file "$1")"
  [ -f "$f" ] || return 0
  head -1 "$f" 2>/dev/null | tr -dc '0-9'
}

port_busy() {
  local p="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "sport = :$p" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null
  fi
}

http_get() {  # http_get URL -> "CODE BODY" (CODE 000 when nothing answers)
  curl -s -m 2 -w '\n%{http_code}' "$1" 2>/dev/null || true
}

resolve_bin() {
  if [ -n "${BIN:-}" ]; then
    [ -x "$BIN" ] || die "BIN=$BIN is not an executable file"
    return
  fi
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/$BIN_NAME"
  if [ ! -x "$BIN" ] || [ "$BUILD" = 1 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found and $BIN missing; set BIN=/path/to/$BIN_NAME"
    note "building: cargo build -p $BIN_NAME (in $REPO)"
    (cd "$REPO" && cargo build -p "$BIN_NAME") || die "cargo build failed"
  fi
  [ -x "$BIN" ] || die "$BIN not found after the build"
}

# Stops the given "N:PID" nodes: SIGTERM to all, wait up to STOP_TIMEOUT s, SIGKILL the rest.
stop_nodes() {
  local item n pid left i
  for item in "$@"; do
    n="${item%%:*}"; pid="${item#*:}"
    if ours "$pid" "$n"; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    left=0
    for item in "$@"; do
      n="${item%%:*}"; pid="${item#*:}"
      ours "$pid" "$n" && left=1
    done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for item in "$@"; do
    n="${item%%:*}"; pid="${item#*:}"
    if ours "$pid" "$n"; then
      note "node $n (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Reap our own children (only when called from `up` in the same shell); harmless otherwise.
  for item in "$@"; do wait "${item#*:}" 2>/dev/null || true; done
}

STARTED=()  # "N:PID" of the nodes the current `up` started

abort_up() {
  local item
  note "up interrupted: stopping the nodes started so far"
  stop_nodes "${STARTED[@]}"
  for item in "${STARTED[@]}"; do rm -f "$(pid_file "${item%%:*}")"; done
  exit 130
}

cmd_up() {
  check_numbers
  local n pid busy=()
  STARTED=()
  # Already up? Look at every pid file in DATA, whatever NODES was on the previous `up`.
  local f
  for f in "$DATA"/node-*.pid; do
    [ -e "$f" ] || continue
    n="${f##*/node-}"; n="${n%.pid}"
    is_uint "$n" || continue
    pid="$(read_pid "$n")"
    if [ -n "$pid" ] && ours "$pid" "$n"; then
      die "node $n of the cluster in $DATA is already running (pid $pid); run '$0 down' first"
    fi
    note "removing stale $f (pid ${pid:-?} is not a running $BIN_NAME of this cluster)"
    rm -f "$f"
  done
  for ((n = 1; n <= NODES; n++)); do
    port_busy "$(http_port "$n")" && busy+=("$(http_port "$n")")
    port_busy "$(raft_port "$n")" && busy+=("$(raft_port "$n")")
  done
  [ "${#busy[@]}" = 0 ] || die "port(s) already in use on $HOST: ${busy[*]} (set BASE_PORT to use others)"

  resolve_bin
  mkdir -p "$DATA"
  FOUNDERS="$NODES"
  save_env

  local peers=""
  for ((n = 1; n <= NODES; n++)); do
    peers+="${peers:+,}$n=$HOST:$(raft_port "$n")"
  done

  # If `up` is interrupted or fails, stop what it started rather than leave strays.
  trap abort_up INT TERM

  for ((n = 1; n <= NODES; n++)); do
    start_node "$n" "$peers"
    STARTED+=("$n:$(read_pid "$n")")
  done
  note "started $NODES node(s) ($BIN), waiting up to ${READY_TIMEOUT}s for /readyz"

  local deadline=$((SECONDS + READY_TIMEOUT)) ready out code failed=""
  while :; do
    ready=0
    for item in "${STARTED[@]}"; do
      n="${item%%:*}"; pid="${item#*:}"
      if ! kill -0 "$pid" 2>/dev/null; then
        failed="node $n (pid $pid) exited"
        break 2
      fi
      out="$(http_get "http://$HOST:$(http_port "$n")/readyz")"
      code="${out##*$'\n'}"
      [ "$code" = 200 ] && ready=$((ready + 1))
    done
    [ "$ready" = "$NODES" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      failed="not every node ready after ${READY_TIMEOUT}s ($ready/$NODES)"
      break
    fi
    sleep 0.2
  done

  if [ -n "$failed" ]; then
    echo "cluster.sh: up failed: $failed" >&2
    for ((n = 1; n <= NODES; n++)); do
      out="$(http_get "http://$HOST:$(http_port "$n")/readyz")"
      echo "---- node $n: /readyz -> ${out##*$'\n'} ${out%$'\n'*}" >&2
      echo "---- tail of $(log_file "$n"):" >&2
      tail -n 20 "$(log_file "$n")" >&2 || true
    done
    note "stopping the nodes (data kept in $DATA)"
    stop_nodes "${STARTED[@]}"
    for ((n = 1; n <= NODES; n++)); do rm -f "$(pid_file "$n")"; done
    exit 1
  fi
  trap - INT TERM

  echo "ringkv cluster up: $NODES node(s), $SHARDS shard(s), data in $DATA"
  for ((n = 1; n <= NODES; n++)); do
    printf '  node %d  pid %-7s http http://%s:%s  internal %s:%s  log %s\n' \
      "$n" "$(read_pid "$n")" "$HOST" "$(http_port "$n")" "$HOST" "$(raft_port "$n")" "$(log_file "$n")"
  done
  local h1 h2
  h1="http://$HOST:$(http_port 1)"
  h2="http://$HOST:$(http_port "$((NODES > 1 ? 2 : 1))")"
  echo "try:"
  echo "  curl -X PUT --data-binary 'world' $h1/v1/kv/hello"
  echo "  curl $h2/v1/kv/hello"
  echo "  curl $h1/v1/cluster"
  echo "stop: $0 down   (state: $0 status)"
}

cmd_join() {
  [ -f "$DATA/cluster.env" ] || die "no cluster in $DATA: run '$0 up' first"
  load_env
  FOUNDERS="${FOUNDERS:-$NODES}"
  check_numbers
  local n=$((NODES + 1)) i peers="" all="" out code pid
  for ((i = 1; i <= FOUNDERS; i++)); do peers+="${peers:+,}$i=$HOST:$(raft_port "$i")"; done
  port_busy "$(http_port "$n")" && die "port $(http_port "$n") is already in use on $HOST"
  port_busy "$(raft_port "$n")" && die "port $(raft_port "$n") is already in use on $HOST"
  resolve_bin
  # Not a founder: --peers lists the founders only, so it bootstraps nothing and learns
  # the ring from them.
  start_node "$n" "$peers"
  pid="$(read_pid "$n")"
  local deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$(log_file "$n")" >&2; rm -f "$(pid_file "$n")"; die "node $n exited"; }
    out="$(http_get "http://$HOST:$(http_port "$n")/readyz")"
    code="${out##*$'\n'}"
    [ "$code" = 200 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$(log_file "$n")" >&2
      stop_nodes "$n:$pid"
      rm -f "$(pid_file "$n")"
      die "node $n not ready after ${READY_TIMEOUT}s: ${out%$'\n'*}"
    fi
    sleep 0.2
  done
  NODES="$n"
  save_env
  for ((i = 1; i <= NODES; i++)); do all+="${all:+,}$HOST:$(raft_port "$i")"; done
  echo "node $n joined the ring empty: http http://$HOST:$(http_port "$n")  internal $HOST:$(raft_port "$n")  log $(log_file "$n")"
  echo "give it replicas:"
  echo "  cargo run -q -p ringkv-ctl -- --nodes $all add-node $HOST:$(raft_port "$n")"
}

cmd_down() {
  local purge=0 a
  for a in "$@"; do
    case "$a" in
      --purge) purge=1 ;;
      *) die "down: unknown argument '$a' (only --purge)" ;;
    esac
  done
  is_uint "$STOP_TIMEOUT" || die "STOP_TIMEOUT must be an integer"
  [ -d "$DATA" ] || { note "no cluster state in $DATA"; return 0; }
  local f n pid items=()
  for f in "$DATA"/node-*.pid; do
    [ -e "$f" ] || continue
    n="${f##*/node-}"; n="${n%.pid}"
    is_uint "$n" || continue
    pid="$(read_pid "$n")"
    if [ -n "$pid" ] && ours "$pid" "$n"; then
      items+=("$n:$pid")
    else
      note "node $n: pid '${pid:-?}' is not running (or is not this cluster's $BIN_NAME); removing its pid file"
      rm -f "$f"
    fi
  done
  if [ "${#items[@]}" -gt 0 ]; then
    note "stopping ${#items[@]} node(s): ${items[*]}"
    stop_nodes "${items[@]}"
    for a in "${items[@]}"; do
      n="${a%%:*}"; pid="${a#*:}"
      if ours "$pid" "$n"; then
        echo "cluster.sh: node $n (pid $pid) did not stop; pid file kept" >&2
      else
        rm -f "$(pid_file "$n")"
        echo "node $n stopped (pid $pid)"
      fi
    done
  else
    echo "no running nodes in $DATA"
  fi
  if [ "$purge" = 1 ]; then
    if compgen -G "$DATA/node-*.pid" >/dev/null; then
      die "not purging $DATA: some pid files remain"
    fi
    # Only remove a directory that looks like ours.
    if [ -f "$DATA/cluster.env" ]; then
      rm -rf -- "$DATA"
      echo "purged $DATA"
    else
      die "not purging $DATA: no cluster.env there (not created by cluster.sh up?)"
    fi
  fi
}

cmd_status() {
  [ -d "$DATA" ] || { echo "no cluster state in $DATA"; return 3; }
  load_env
  check_numbers
  local n pid alive out code body leaders any_down=0
  echo "cluster in $DATA: $NODES node(s), base port $BASE_PORT"
  for ((n = 1; n <= NODES; n++)); do
    pid="$(read_pid "$n")"
    if [ -n "$pid" ] && ours "$pid" "$n"; then alive="alive"; else alive="down"; any_down=1; fi
    out="$(http_get "http://$HOST:$(http_port "$n")/readyz")"
    code="${out##*$'\n'}"
    if [ "$code" = 000 ]; then body="no answer"; else body="$code ${out%$'\n'*}"; fi
    printf 'node %d  pid %-7s %-5s  http %s:%s  /readyz: %s\n' "$n" "${pid:--}" "$alive" "$HOST" "$(http_port "$n")" "$body"
    out="$(http_get "http://$HOST:$(http_port "$n")/v1/cluster")"
    code="${out##*$'\n'}"
    if [ "$code" = 200 ]; then
      leaders="$(printf '%s' "${out%$'\n'*}" | shard_leaders)"
      echo "        shard leaders: $leaders"
    fi
  done
  [ "$any_down" = 0 ] || return 3
}

# /v1/cluster JSON on stdin -> "0=>1 1=>2 ..." (shard => leader node id, '-' when none).
shard_leaders() {
  if command -v jq >/dev/null 2>&1; then
    jq -r '[.shards[] | "\(.id)=>\(.leader // "-")"] | join(" ")' 2>/dev/null || echo "(unparsable)"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(" ".join("%s=>%s" % (s["id"], s["leader"] if s.get("leader") is not None else "-") for s in d["shards"]))
except Exception:
    print("(unparsable)")'
  else
    echo "(need jq or python3 to show)"
  fi
}

main() {
  command -v curl >/dev/null 2>&1 || die "curl is required"
  abs_data
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    up) [ $# = 0 ] || die "up takes no arguments"; cmd_up ;;
    join) [ $# = 0 ] || die "join takes no arguments"; cmd_join ;;
    down) cmd_down "$@" ;;
    status) [ $# = 0 ] || die "status takes no arguments"; cmd_status ;;
    *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
