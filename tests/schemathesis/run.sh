#!/usr/bin/env bash
# Fuzz a standalone ringkv node's HTTP API with Schemathesis, against the
# OpenAPI document the node serves, with every check enabled.
#
# Usage: tests/schemathesis/run.sh [NODE_BINARY] [extra `st run` arguments...]
#   NODE_BINARY defaults to target/debug/ringkv-node under the repository root.
# Environment:
#   RINGKV_ST_VENV         venv to (re)use (default: ${XDG_CACHE_HOME:-$HOME/.cache}/ringkv-schemathesis)
#   RINGKV_ST_SEED         seed (default 42)
#   RINGKV_ST_MAX_EXAMPLES examples per operation (default 60)
#   CI=true                a missing python3/venv/pip is a failure instead of a skip
set -euo pipefail

ST_VERSION=4.32.5
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
node_bin="${1:-$root/target/debug/ringkv-node}"
if [[ $# -gt 0 ]]; then shift; fi
[[ "$node_bin" == /* ]] || node_bin="$PWD/$node_bin"
venv="${RINGKV_ST_VENV:-${XDG_CACHE_HOME:-${HOME:?}/.cache}/ringkv-schemathesis}"
seed="${RINGKV_ST_SEED:-42}"
max_examples="${RINGKV_ST_MAX_EXAMPLES:-60}"
# A successful GET /v1/watch is an endless event stream: st reads it until this
# timeout, so it bounds every watch case (and the run time with it).
request_timeout=2

skip() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAILED schemathesis: $1 (CI=true: not skipping)" >&2
        exit 1
    fi
    echo "SKIPPED schemathesis: $1"
    exit 0
}

if [[ ! -x "$node_bin" ]]; then
    echo "error: node binary $node_bin not found or not executable (build it: cargo build -p ringkv-node)" >&2
    exit 1
fi

# --- (i) schemathesis in a venv, reused when it already has the right version.
installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)"
if [[ "$installed" != "$ST_VERSION" ]]; then
    command -v python3 >/dev/null || skip "python3 not found"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        skip "schemathesis $ST_VERSION needs python >= 3.11, python3 is $(python3 -V 2>&1)"
    if [[ ! -x "$venv/bin/python" ]]; then
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" >/dev/null 2>&1 || { rm -rf "$venv"; skip "python3 -m venv failed (python3-venv/ensurepip missing?)"; }
    fi
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 || skip "pip is unavailable in $venv"
    echo "installing schemathesis==$ST_VERSION into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

# --- (ii) a standalone node on free loopback ports, with a fresh data dir.
work="$(mktemp -d -t ringkv-st.XXXXXX)"
node_pid=""
cleanup() {
    if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
        kill "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r port internal_port < <("$venv/bin/python" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
log="$work/node.log"
mkdir -p "$work/data" "$work/cwd"
# With authentication on, as the document declares it: st sends an admin token, and its
# `ignored_auth` check sends requests without one and holds the node to its 401s.
token="rkv_$("$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
printf '{"tokens": [{"name": "schemathesis", "sha256": "%s", "role": "admin"}]}\n' \
    "$(printf %s "$token" | sha256sum | cut -d' ' -f1)" >"$work/tokens.json"
NO_COLOR=1 "$node_bin" --listen "127.0.0.1:$port" --internal-listen "127.0.0.1:$internal_port" \
    --peers= --data-dir "$work/data" --auth-tokens "$work/tokens.json" >"$log" 2>&1 &
node_pid=$!

base="http://127.0.0.1:$port"
if ! "$venv/bin/python" - "$base/readyz" "$node_pid" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("node exited before it was ready")
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit("node not ready (GET /readyz != 200) within 30 s")
EOF
then
    echo "--- node log (tail) ---" >&2
    tail -n 50 "$log" >&2 || true
    exit 1
fi
# The document itself needs the token too.
"$venv/bin/python" - "$base/v1/openapi.json" "$token" "$work/openapi.json" <<'EOF'
import sys, urllib.request
url, token, out = sys.argv[1:4]
req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
with urllib.request.urlopen(req, timeout=10) as resp, open(out, "wb") as f:
    f.write(resp.read())
EOF

# --- (iii) the run. The hooks only drop the two schema-valid combinations that
# OpenAPI cannot exclude (see hooks.py). Sanitizing and truncation are off so the
# report shows the real values. Run from a scratch dir: nothing lands in the repo.
status=0
(
    cd "$work/cwd"
    SCHEMATHESIS_HOOKS="$here/hooks.py" "$venv/bin/st" run "$work/openapi.json" \
        --url "$base" \
        --header "Authorization: Bearer $token" \
        --checks all \
        --workers 1 \
        --seed "$seed" \
        --max-examples "$max_examples" \
        --request-timeout "$request_timeout" \
        --generation-database none \
        --output-sanitize false \
        --output-truncate false \
        --no-color \
        "$@"
) || status=$?

# --- (iv) the node's log on failure; the trap stops the node.
if [[ $status -ne 0 ]]; then
    echo "--- node log (last 50 lines) ---" >&2
    tail -n 50 "$log" >&2 || true
fi
exit "$status"
