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

[[ $(id -u) == 0 ]] || skip "not root: kubelet, containerd and iptables need root"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get: cluster.sh installs etcd, CNI plugins and iptables from Debian's packages"
command -v go >/dev/null 2>&1 || skip "no Go toolchain: Kubernetes, containerd and runc are built from Go modules"
[[ -d /sys/fs/cgroup ]] || skip "no /sys/fs/cgroup: the kubelet needs cgroups"

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
step "cluster check" bash "$HERE/cluster.sh" check
step "images" bash "$HERE/images.sh" all
step "e2e" bash "$HERE/e2e.sh"
log "all passed in $((SECONDS - T0)) s"
