#!/usr/bin/env bash
# The real-Kubernetes end-to-end as CI runs it (issue 12): build and start the local
# cluster (cluster.sh up), build and import the images (images.sh all), run e2e.sh,
# and always tear the cluster down again, whatever failed.
#
#   bash tests/k8s/ci.sh
#
# It needs root (kubelet, containerd, iptables, mounts) and Debian's apt for the
# packages cluster.sh installs. Without them it prints why and skips (exit 0): that is
# a machine that cannot run a kubelet, not a failure of ringkv. Everything else that
# goes wrong (a build, the cluster not coming up, any e2e check) fails (exit 1).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T0=$SECONDS
log() { printf '%s [k8s-ci] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
skip() { log "SKIPPED: $*"; exit 0; }

# Go is often installed outside a non-login shell's PATH (the official tarball's place).
for d in /usr/local/go/bin "$HOME/go/bin" /usr/lib/go/bin; do
  [[ -x $d/go && :$PATH: != *":$d:"* ]] && PATH=$PATH:$d
done
export PATH
if [[ $(id -u) != 0 ]]; then
  # Root is needed; a CI user with passwordless sudo runs the whole script as root.
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    log "not root: running under sudo"
    exec sudo -n --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,GOPATH,GOMODCACHE,GOCACHE bash "$0" "$@"
  fi
  skip "not root (uid $(id -u)) and no passwordless sudo: kubelet, containerd and iptables need root"
fi
command -v apt-get >/dev/null 2>&1 || skip "no apt-get: cluster.sh installs etcd, CNI plugins and iptables from Debian's packages"
command -v go >/dev/null 2>&1 || skip "no Go toolchain on PATH ($PATH) nor in /usr/local/go/bin: Kubernetes, containerd and runc are built from Go modules"
[[ -d /sys/fs/cgroup ]] || skip "no /sys/fs/cgroup: the kubelet needs cgroups"
# A cold run needs about 9 GB more than the tests' own build: the Go module and build
# caches (~5 GB, the build cache dropped after `up` under CI), the cached binaries, the
# release target of the images and containerd's store. Too little disk is the machine's
# limit, not a failure of ringkv: say so and skip instead of dying half-way.
NEED_GB=${RINGKV_K8S_NEED_GB:-12}
free_gb=$(df -P -BG "$HOME" | awk 'NR==2 {sub("G","",$4); print $4}')
if [[ -n $free_gb ]] && ((free_gb < NEED_GB)); then
  skip "only ${free_gb} GB free on $(df -P "$HOME" | awk 'NR==2 {print $6}'); the real-Kubernetes suite needs ${NEED_GB} GB (RINGKV_K8S_NEED_GB)"
fi
log "root, apt-get, $(go version), cgroups at /sys/fs/cgroup, ${free_gb:-?} GB free: running the real-Kubernetes suite"

teardown() {
  log "tearing the cluster down"
  bash "$HERE/cluster.sh" down >/dev/null 2>&1 || bash "$HERE/cluster.sh" down || true
}
trap teardown EXIT

step() { # name command...
  local name=$1 t=$SECONDS
  shift
  log "$name ..."
  if ! "$@"; then
    log "FAILED: $name (after $((SECONDS - t)) s)"
    if [[ $name == "cluster up" ]]; then
      bash "$HERE/cluster.sh" status || true
      tail -n 40 "${RINGKV_K8S_STATE:-$HOME/.local/state/ringkv-k8s}"/logs/*.log 2>/dev/null || true
    fi
    exit 1
  fi
  log "$name: done in $((SECONDS - t)) s"
}

step "cluster up" bash "$HERE/cluster.sh" up
# The binaries are cached by version; under CI the Go build cache behind them is only
# disk taken from the rest of the run.
if [[ ${CI:-} == true ]]; then
  go clean -cache && log "Go build cache dropped; $(df -P -BG "$HOME" | awk 'NR==2 {print $4}') free"
fi
step "cluster check" bash "$HERE/cluster.sh" check
step "images" bash "$HERE/images.sh" all
step "e2e" bash "$HERE/e2e.sh"
log "all passed in $((SECONDS - T0)) s"
