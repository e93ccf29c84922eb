#!/usr/bin/env bash
# ringkv.sh — ringkv, 3 nodes on 127.0.0.1, measured with wrk over the v1 HTTP API.
#
#   ringkv3.put                PUT /v1/kv/{key}, random key over KEYSPACE, VALUE_SIZE-byte raw value,
#                              sent to the node that leads the most shards (the "leader node")
#   ringkv3.get                GET /v1/kv/{key} (linearizable, the default), random key, leader node
#   ringkv3.get_serializable   GET /v1/kv/{key}?consistency=serializable, random key, leader node
#   ringkv3.put_via_follower   as put, sent to the node leading the fewest shards (forwarded)
#
# Keys are 16 bytes (k + 15 digits), prefilled once (KEYSPACE keys) before the loads. Each load
# is wrk -t$THREADS -c$CONNS -d$DURATION (closed loop). Results are `name: value unit` lines on
# stdout, notes on stderr; see bench/README.md. Usable alone or under the peers' repeat.sh.
#
# Env: DURATION (8, max 20), CONNS (64), THREADS (2), KEYSPACE (100000), VALUE_SIZE (100),
#      SHARDS (4), BASE_PORT (28080: HTTP 28080-28082, internal 28180-28182),
#      NO_BUILD=1 (skip `cargo build --release -p ringkv-node`), BIN (node binary; implies NO_BUILD),
#      PREFILL_MAX_S (120), RINGKV_LOG (node log filter, passed through),
#      SECURE=1 (names ringkv3s.*: HTTPS on the client ports, mutual TLS on the internal ports
#      and a bearer token on every request, certificates and token made here with openssl).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"

KEYSPACE="${KEYSPACE:-100000}"
VALUE_SIZE="${VALUE_SIZE:-100}"
SHARDS="${SHARDS:-4}"
BASE_PORT="${BASE_PORT:-28080}"
PREFILL_MAX_S="${PREFILL_MAX_S:-120}"
NO_BUILD="${NO_BUILD:-0}"
NODES=3
HOST=127.0.0.1
P=ringkv3
SECURE="${SECURE:-0}"
SCHEME=http
# Extra arguments of every curl and wrk call, and of every node (SECURE=1).
CURL_EXTRA=()
WRK_EXTRA=()
NODE_EXTRA=()

for v in KEYSPACE VALUE_SIZE SHARDS BASE_PORT PREFILL_MAX_S; do
  case "${!v}" in '' | *[!0-9]*) echo "$v must be a non-negative integer, got '${!v}'" >&2; exit 2 ;; esac
done
if [ "$KEYSPACE" -lt "$THREADS" ] || [ "$KEYSPACE" -gt 999999999999999 ]; then
  echo "KEYSPACE must be THREADS..10^15-1, got $KEYSPACE" >&2; exit 2
fi

require wrk "install it with: apt-get install -y wrk"
require curl "apt-get install -y curl"
if command -v jq >/dev/null 2>&1; then JSON=jq
elif command -v python3 >/dev/null 2>&1; then JSON=python3
else echo "missing command: jq or python3 (to read /v1/cluster)" >&2; exit 3
fi

# ---- binary -------------------------------------------------------------------------------
if [ -n "${BIN:-}" ]; then
  [ -x "$BIN" ] || { echo "BIN=$BIN is not executable" >&2; exit 3; }
else
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/ringkv-node"
  case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
  if [ "$NO_BUILD" != 1 ]; then
    require cargo "the Rust toolchain, or set NO_BUILD=1 / BIN=..."
    note "cargo build --release -p ringkv-node"
    (cd "$REPO" && cargo build --release -p ringkv-node >&2) || { echo "release build failed" >&2; exit 5; }
  fi
  [ -x "$BIN" ] || { echo "$BIN not found (build it, or unset NO_BUILD)" >&2; exit 3; }
fi
rev="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$REPO" status --porcelain -- node 2>/dev/null | head -1)" ]; then rev="$rev+dirty"; fi
note "ringkv-node $("$BIN" --version 2>/dev/null | awk '{print $NF}') (git $rev), $BIN"

# ---- cluster --------------------------------------------------------------------------------
http_port() { echo $((BASE_PORT + $1 - 1)); }
raft_port() { echo $((BASE_PORT + 100 + $1 - 1)); }
all_ports=()
for ((n = 1; n <= NODES; n++)); do all_ports+=("$(http_port "$n")" "$(raft_port "$n")"); done
ports_free_or_exit "${all_ports[@]}"

make_tmpdir WORK ringkv-bench
note "cluster data and logs in $WORK"
if [ "$SECURE" = 1 ]; then
  require openssl "apt-get install -y openssl"
  P=ringkv3s
  SCHEME=https
  # A CA, one certificate for every node (they share 127.0.0.1), and an admin token.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/node-key.pem" -out "$WORK/node.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' "$HOST" >"$WORK/node.ext"
  openssl x509 -req -in "$WORK/node.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" -CAcreateserial \
    -days 2 -extfile "$WORK/node.ext" -out "$WORK/node.pem" 2>/dev/null
  TOKEN="rkv_$(openssl rand -hex 32)"
  printf '{"tokens": [{"name": "bench", "sha256": "%s", "role": "admin"}]}\n' \
    "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" >"$WORK/tokens.json"
  CURL_EXTRA=(--cacert "$WORK/ca.pem" -H "Authorization: Bearer $TOKEN")
  WRK_EXTRA=(-H "Authorization: Bearer $TOKEN")
  NODE_EXTRA=(--tls-cert "$WORK/node.pem" --tls-key "$WORK/node-key.pem"
    --internal-tls-cert "$WORK/node.pem" --internal-tls-key "$WORK/node-key.pem" --internal-tls-ca "$WORK/ca.pem"
    --auth-tokens "$WORK/tokens.json")
fi
peers=""
for ((n = 1; n <= NODES; n++)); do peers+="${peers:+,}$n=$HOST:$(raft_port "$n")"; done

NODE_PIDS=()
t_start=$(date +%s)
for ((n = 1; n <= NODES; n++)); do
  mkdir -p "$WORK/node-$n"
  NO_COLOR=1 "$BIN" --node-id "$n" --listen "$HOST:$(http_port "$n")" --internal-listen "$HOST:$(raft_port "$n")" \
    --peers "$peers" --shards "$SHARDS" --data-dir "$WORK/node-$n" "${NODE_EXTRA[@]}" \
    </dev/null >"$WORK/node-$n.log" 2>&1 &
  own_pid $!
  NODE_PIDS+=("$!")
done

show_logs() {
  local n
  for ((n = 1; n <= NODES; n++)); do
    echo "---- node $n log tail:" >&2
    tail -n 15 "$WORK/node-$n.log" >&2 || true
  done
}

wait_ready() {  # every node answers /readyz 200 within 30 s
  local deadline=$((SECONDS + 30)) n ok
  while :; do
    ok=0
    for ((n = 1; n <= NODES; n++)); do
      kill -0 "${NODE_PIDS[$((n - 1))]}" 2>/dev/null || { echo "node $n exited" >&2; show_logs; exit 6; }
      [ "$(curl "${CURL_EXTRA[@]}" -s -o /dev/null -m 2 -w '%{http_code}' "$SCHEME://$HOST:$(http_port "$n")/readyz" || true)" = 200 ] && ok=$((ok + 1))
    done
    [ "$ok" = "$NODES" ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then echo "cluster not ready after 30 s ($ok/$NODES)" >&2; show_logs; exit 6; fi
    sleep 0.2
  done
}

# leaders_of NODE -> one leader id per shard ("-" when none), as NODE sees it
leaders_of() {
  local body
  body="$(curl "${CURL_EXTRA[@]}" -sf -m 3 "$SCHEME://$HOST:$(http_port "$1")/v1/cluster")" || { echo "?"; return 0; }
  if [ "$JSON" = jq ]; then
    printf '%s' "$body" | jq -r '.shards | sort_by(.id) | map(.leader // "-" | tostring) | join(" ")'
  else
    printf '%s' "$body" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join("-" if s.get("leader") is None else str(s["leader"]) for s in sorted(d["shards"], key=lambda s: s["id"])))'
  fi
}

wait_ready
ldr="$(leaders_of 1)"
note "ready after $(( $(date +%s) - t_start )) s; shard leaders (shard 0..$((SHARDS - 1))): $ldr"
# The leader node leads the most shards; the follower node the fewest (ties: lowest id).
read -r LEADER FOLLOWER < <(printf '%s\n' "$ldr" | tr ' ' '\n' | awk -v nodes="$NODES" '
  { c[$1]++ }
  END { best = 1; worst = 0
        for (i = 1; i <= nodes; i++) if (c[i] + 0 > c[best] + 0) best = i
        for (i = 1; i <= nodes; i++) if (i != best && (worst == 0 || c[i] + 0 < c[worst] + 0)) worst = i
        print best, worst }')
LEADER_URL="$SCHEME://$HOST:$(http_port "$LEADER")"
FOLLOWER_URL="$SCHEME://$HOST:$(http_port "$FOLLOWER")"
note "load target: node $LEADER ($LEADER_URL, leads $(tr ' ' '\n' <<<"$ldr" | grep -cx "$LEADER") of $SHARDS shards); put_via_follower: node $FOLLOWER"

# ---- lua ------------------------------------------------------------------------------------
# Keys: "k" + 15 digits = 16 bytes. Values: VALUE_SIZE bytes of 'v', sent raw.
# Prefill: each wrk thread owns every THREADS-th key and sends them in order, then re-sends
# the ones not yet acknowledged (a PUT answer names its key) until all are; then it writes a
# marker file and stops. Two wrk details matter here: wrk calls request() once on thread 0
# and throws the result away (to check for pipelining), and a request in flight on a
# connection that breaks is never answered. Either would silently lose a key without retries.
write_prefill_lua() {
  cat >"$WORK/prefill.lua" <<EOF
local keyspace, nthreads, markdir = $KEYSPACE, $THREADS, "$WORK"
local value = string.rep("v", $VALUE_SIZE)
local hdrs = { ["Content-Type"] = "application/octet-stream" }
for k, v in pairs(wrk.headers) do hdrs[k] = hdrs[k] or v end -- -H (the bearer token, SECURE=1)
local tcount = 0
function setup(thread) thread:set("tid", tcount); tcount = tcount + 1 end

local next_n, share, acked, failed, resent = 0, 0, 0, 0, 0
local confirmed, todo, todo_i = {}, nil, 0
local primed, reported = false, false
local filler = nil
local function put(n) return wrk.format("PUT", string.format("/v1/kv/k%015d", n), hdrs, value) end

function init(args)
  next_n = tid
  for n = tid, keyspace - 1, nthreads do share = share + 1 end
  filler = wrk.format("GET", "/healthz")
end

function request()
  if not primed then primed = true; return filler end
  if next_n < keyspace then
    local n = next_n
    next_n = next_n + nthreads
    return put(n)
  end
  -- retry pass: cycle over the keys not acknowledged when the first pass ended
  if todo == nil then
    todo = {}
    for n = tid, keyspace - 1, nthreads do
      if not confirmed[n] then todo[#todo + 1] = n end
    end
  end
  for _ = 1, #todo do
    todo_i = todo_i % #todo + 1
    local n = todo[todo_i]
    if not confirmed[n] then resent = resent + 1; return put(n) end
  end
  return filler
end

function response(status, headers, body)
  if status == 200 then
    local k = body:match('"key":"k(%d+)"')
    if k then
      local n = tonumber(k)
      if not confirmed[n] then confirmed[n] = true; acked = acked + 1 end
    end
  else
    failed = failed + 1
  end
  if not reported and acked >= share then
    reported = true
    local f = io.open(markdir .. "/prefill-done." .. tid, "w")
    f:write(string.format("%d %d %d\n", acked, failed, resent))
    f:close()
    wrk.thread:stop()
  end
end
EOF
}

write_load_lua() {  # write_load_lua FILE put|get [QUERY]
  local file="$1" kind="$2" query="${3:-}" req
  if [ "$kind" = put ]; then
    req='wrk.format("PUT", string.format("/v1/kv/k%015d", math.random(0, keyspace - 1)), hdrs, value)'
  else
    req="wrk.format(\"GET\", string.format(\"/v1/kv/k%015d$query\", math.random(0, keyspace - 1)))"
  fi
  cat >"$file" <<EOF
local keyspace = $KEYSPACE
local value = string.rep("v", $VALUE_SIZE)
local hdrs = { ["Content-Type"] = "application/octet-stream" }
for k, v in pairs(wrk.headers) do hdrs[k] = hdrs[k] or v end -- -H (the bearer token, SECURE=1)
local tcount = 0
function setup(thread) tcount = tcount + 1; thread:set("seed", tcount * 7919 + os.time()) end
function init(args) math.randomseed(seed or os.time()) end
function request() return $req end
$WRK_SUMMARY_LUA
EOF
}

# ---- prefill ----------------------------------------------------------------------------------
prefill() {
  local t0 t1 pid i done_n ok=0 failed=0 resent=0 a b c f
  write_prefill_lua
  t0="$(date +%s%N)"
  wrk "${WRK_EXTRA[@]}" -t"$THREADS" -c"$CONNS" -d"${PREFILL_MAX_S}s" --timeout 10s -s "$WORK/prefill.lua" "$LEADER_URL" \
    >"$WORK/prefill.out" 2>&1 &
  pid=$!
  own_pid "$pid"
  for ((i = 0; i < PREFILL_MAX_S * 20; i++)); do
    done_n="$(find "$WORK" -maxdepth 1 -name 'prefill-done.*' | wc -l)"
    [ "$done_n" -ge "$THREADS" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  t1="$(date +%s%N)"
  kill -INT "$pid" 2>/dev/null || true   # wrk ends its run early on SIGINT
  stop_own "$pid" 5
  for f in "$WORK"/prefill-done.*; do
    [ -e "$f" ] || continue
    read -r a b c <"$f"
    ok=$((ok + a)); failed=$((failed + b)); resent=$((resent + c))
  done
  local secs; secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')"
  note "prefill: $ok keys written in $secs s via node $LEADER ($failed answers with status != 200, $resent puts re-sent)"
  if [ "$ok" -ne "$KEYSPACE" ]; then
    echo "prefill incomplete: $ok of $KEYSPACE keys acknowledged within PREFILL_MAX_S=$PREFILL_MAX_S s" >&2
    tail -n 20 "$WORK/prefill.out" >&2 || true
    exit 7
  fi
  emit "$P.prefill.ops_per_s" "$(awk -v n="$ok" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }')" ops/s
  # spot check: first and last key, read back through another node
  local k
  for k in 0 $((KEYSPACE - 1)); do
    curl "${CURL_EXTRA[@]}" -sf -m 5 "$FOLLOWER_URL/v1/kv/$(printf 'k%015d' "$k")" | grep -q '"value"' \
      || { echo "prefilled key $k not readable via node $FOLLOWER" >&2; exit 7; }
  done
}

prefill

# ---- loads ---------------------------------------------------------------------------------------
write_load_lua "$WORK/put.lua" put
write_load_lua "$WORK/get.lua" get
write_load_lua "$WORK/get_ser.lua" get "?consistency=serializable"

leaders_note() {  # leader changes during a load skew its figures: say so
  local now; now="$(leaders_of "$LEADER")"
  [ "$now" = "$ldr" ] || note "after $1: shard leaders changed: $ldr -> $now"
  ldr="$now"
}

wrk_load "$P.put" "$LEADER_URL/" "$WORK/put.lua"; leaders_note put
wrk_load "$P.get" "$LEADER_URL/" "$WORK/get.lua"; leaders_note get
wrk_load "$P.get_serializable" "$LEADER_URL/" "$WORK/get_ser.lua"; leaders_note get_serializable
wrk_load "$P.put_via_follower" "$FOLLOWER_URL/" "$WORK/put.lua"; leaders_note put_via_follower

for ((n = 1; n <= NODES; n++)); do
  emit "$P.node$n.data_dir_kb" "$(du -sk "$WORK/node-$n" | cut -f1)" KiB
done
# Stop the leader node first: its followers are up to date, so its shutdown handoff is quick
# (stopping all at once makes it wait out its handoff bound). The EXIT trap covers the rest.
stop_own "${NODE_PIDS[$((LEADER - 1))]}" 15
for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${NODE_PIDS[@]}"; do stop_own "$p" 15; done

# Warnings and errors in the node logs, grouped by message (timestamps cut off).
if grep -qE '^[^ ]+ +(ERROR|WARN) ' "$WORK"/node-*.log; then
  note "WARN/ERROR lines in the node logs (count, start of message):"
  grep -hE '^[^ ]+ +(ERROR|WARN) ' "$WORK"/node-*.log | sed -E 's/^[^ ]+ +//' | cut -c1-110 \
    | sort | uniq -c | sort -rn | head -n 8 | sed 's/^/#   /' >&2
fi
emit "$P.wall_s" "$(( $(date +%s) - t_start ))" s
