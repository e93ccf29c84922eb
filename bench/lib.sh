# bench/lib.sh — helpers for the ringkv bench scripts. Source it; do not run it.
#
# What every script built on it keeps to: 127.0.0.1 only, every load bounded in time,
# signals only the pids it started itself, removes its own temp dir on exit, and prints
# results as `name: value unit` lines on stdout (notes go to stderr, prefixed with '#').
# shellcheck shell=bash

set -euo pipefail

DURATION="${DURATION:-8}"   # seconds per wrk run
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
for _v in DURATION CONNS THREADS; do
  case "${!_v}" in '' | *[!0-9]*) echo "$_v must be a positive integer, got '${!_v}'" >&2; exit 2 ;; esac
done
if [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 20 ]; then echo "DURATION must be 1..20 (s), got $DURATION" >&2; exit 2; fi

HZ="$(getconf CLK_TCK)"

note() { printf '# %s\n' "$*" >&2; }

# emit NAME VALUE [UNIT]: one result line.
emit() {
  if [ -n "${3:-}" ]; then printf '%s: %s %s\n' "$1" "$2" "$3"; else printf '%s: %s\n' "$1" "$2"; fi
}

require() {  # require CMD [HINT]
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "missing command: $1${2:+ ($2)}" >&2
  exit 3
}

# ---- our own processes and temp dirs, cleaned up on exit ----------------------------
OWN_PIDS=()
OWN_DIRS=()

own_pid() { OWN_PIDS+=("$1"); }

make_tmpdir() {  # make_tmpdir VAR PREFIX: a fresh dir under ${TMPDIR:-/tmp}, removed on exit
  local d
  d="$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX")"
  OWN_DIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

forget_pid() {  # drop a reaped pid, so a later cleanup can never signal a reused pid
  local p keep=()
  for p in "${OWN_PIDS[@]:-}"; do [ -n "$p" ] && [ "$p" != "$1" ] && keep+=("$p"); done
  OWN_PIDS=("${keep[@]:-}")
}

# stop_own PID [GRACE_S]: SIGTERM, wait up to GRACE_S (default 10), then SIGKILL, reap.
# Only for pids in OWN_PIDS (children of this shell, so `wait` reaps them).
stop_own() {
  local pid="$1" grace="${2:-10}" i
  case " ${OWN_PIDS[*]:-} " in *" $pid "*) ;; *) return 0 ;; esac
  # a signal may already be on its way (e.g. SIGINT to wrk): give it a moment first
  for ((i = 0; i < 5; i++)); do kill -0 "$pid" 2>/dev/null && sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      note "pid $pid ignored SIGTERM for ${grace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

stop_all_own() {  # SIGTERM all first (parallel shutdown), then wait for each
  local p
  for p in "${OWN_PIDS[@]:-}"; do
    if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  for p in "${OWN_PIDS[@]:-}"; do
    if [ -n "$p" ]; then stop_own "$p" 15; fi
  done
  OWN_PIDS=()
}

on_exit() {
  local d
  stop_all_own
  for d in "${OWN_DIRS[@]:-}"; do [ -n "$d" ] && [ -d "$d" ] && rm -rf -- "$d"; done
  OWN_DIRS=()
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP

# ---- ports ------------------------------------------------------------------------------
port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "sport = :$1" 2>/dev/null | grep -q .
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

ports_free_or_exit() {
  local p
  for p in "$@"; do
    if port_in_use "$p"; then echo "port $p is in use; pick another BASE_PORT" >&2; exit 4; fi
  done
}

# ---- CPU accounting -------------------------------------------------------------------
# Clock ticks of user+system time (all threads) of the live pids in OWN_PIDS.
own_cpu_ticks() {
  local p s sum=0 f
  for p in "${OWN_PIDS[@]:-}"; do
    if [ -z "$p" ] || [ ! -r "/proc/$p/stat" ]; then continue; fi
    s="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
    # fields after "(comm) ": state is [0], utime [11], stime [12]
    read -r -a f <<<"${s##*) }"
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}

# "total busy irq" ticks of the whole machine from the cpu line of /proc/stat.
machine_ticks() {
  local _cpu u n s idle iow irq sirq steal _rest
  read -r _cpu u n s idle iow irq sirq steal _rest </proc/stat
  echo "$((u + n + s + idle + iow + irq + sirq + steal)) $((u + n + s + irq + sirq + steal)) $((irq + sirq))"
}

# timed_load TIMEOUT_S CMD...: runs the load generator CMD, captures its output in LOAD_OUT,
# its own CPU (user+sys, seconds) in LOAD_CPU_S, the wall time in LOAD_WALL_S, and machine /
# server tick snapshots for load_cpu_lines. Returns CMD's exit status.
timed_load() {
  local to="$1" rc=0 t0 t1
  shift
  read -r _M0_TOT _M0_BUSY _M0_IRQ < <(machine_ticks)
  _S0="$(own_cpu_ticks)"
  t0="$(date +%s%N)"
  # The wrapper shell waits for CMD, so CMD's CPU lands in the wrapper's cutime/cstime
  # (fields 16 and 17 of /proc/self/stat), which it prints last.
  # shellcheck disable=SC2016
  LOAD_OUT="$(timeout "$to" bash -c '
      "$@"; rc=$?
      read -r st </proc/$$/stat; set -- ${st##*) }
      echo "LOADER_TICKS $((${14} + ${15}))"
      exit $rc' loadwrap "$@" 2>&1)" || rc=$?
  t1="$(date +%s%N)"
  _S1="$(own_cpu_ticks)"
  read -r _M1_TOT _M1_BUSY _M1_IRQ < <(machine_ticks)
  LOAD_WALL_S="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
  LOAD_CPU_S="$(printf '%s\n' "$LOAD_OUT" | awk -v hz="$HZ" '$1 == "LOADER_TICKS" { printf "%.3f", $2 / hz; f = 1 } END { if (!f) print 0 }')"
  LOAD_OUT="$(printf '%s\n' "$LOAD_OUT" | grep -v '^LOADER_TICKS ' || true)"
  return "$rc"
}

# load_cpu_lines NAME REQUESTS: CPU over the last timed_load window, in % of ONE core
# (a 2-core box tops out at 200 %). server = the pids we started; loader = the load
# generator; irq = hard+soft interrupts (loopback TCP); other = the rest of the machine's
# busy time (other tenants, kernel threads): a large other_cpu_pct marks a disturbed run.
load_cpu_lines() {
  local name="$1" reqs="$2"
  awk -v n="$name" -v r="$reqs" -v hz="$HZ" -v w="$LOAD_WALL_S" -v ld="$LOAD_CPU_S" \
      -v s0="$_S0" -v s1="$_S1" -v b0="$_M0_BUSY" -v b1="$_M1_BUSY" -v q0="$_M0_IRQ" -v q1="$_M1_IRQ" 'BEGIN {
    srv = (s1 - s0) / hz; busy = (b1 - b0) / hz; irq = (q1 - q0) / hz
    other = busy - srv - ld - irq; if (other < 0) other = 0
    printf "%s.server_cpu_pct: %.0f %%\n", n, 100 * srv / w
    if (r > 0) printf "%s.server_cpu_us_per_op: %.1f us\n", n, 1e6 * srv / r
    printf "%s.loader_cpu_pct: %.0f %%\n", n, 100 * ld / w
    printf "%s.irq_cpu_pct: %.0f %%\n", n, 100 * irq / w
    printf "%s.other_cpu_pct: %.0f %%\n", n, 100 * other / w
    printf "%s.machine_cpu_pct: %.0f %%\n", n, 100 * busy / w
  }'
}

# ---- wrk --------------------------------------------------------------------------------
# shellcheck disable=SC2034  # used by the scripts that source this file
# Lua done() hook appended to every load script: one machine-readable summary line.
WRK_SUMMARY_LUA='
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_SUMMARY us=%d reqs=%d p50=%d p90=%d p99=%d p999=%d max=%d sock=%d timeout=%d status=%d\n",
    summary.duration, summary.requests,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, e.connect + e.read + e.write + e.timeout, e.timeout, e.status))
end
'

# wrk_load NAME URL LUA: THREADS x CONNS for DURATION s, prints NAME.* result lines.
# errors = socket errors (connect/read/write/timeout) + responses with status >= 400.
wrk_load() {
  local name="$1" url="$2" lua="$3" line kv
  if ! timed_load $((DURATION + 20)) wrk "${WRK_EXTRA[@]}" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$lua" "$url"; then
    printf '%s\n' "$LOAD_OUT" >&2
    note "$name: wrk failed"
    return 1
  fi
  line="$(printf '%s\n' "$LOAD_OUT" | grep '^WRK_SUMMARY ' | tail -n 1)"
  if [ -z "$line" ]; then printf '%s\n' "$LOAD_OUT" >&2; note "$name: no summary from wrk"; return 1; fi
  local -A w=()
  for kv in ${line#WRK_SUMMARY }; do w[${kv%%=*}]="${kv#*=}"; done
  local errs=$((w[sock] + w[status]))
  emit "$name.ops_per_s" "$(awk -v r="${w[reqs]}" -v us="${w[us]}" 'BEGIN { printf "%.1f", r / (us / 1e6) }')" ops/s
  local q
  for q in p50 p90 p99 p999 max; do
    emit "$name.${q}_ms" "$(awk -v v="${w[$q]}" 'BEGIN { printf "%.3f", v / 1000 }')" ms
  done
  emit "$name.requests" "${w[reqs]}" count
  emit "$name.errors" "$errs" count
  load_cpu_lines "$name" "${w[reqs]}"
  if [ "$errs" -gt 0 ]; then
    note "$name: ${w[sock]} socket errors (${w[timeout]} timeouts), ${w[status]} responses with status >= 400"
  fi
}
