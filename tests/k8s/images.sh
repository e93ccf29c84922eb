#!/usr/bin/env bash
# The ringkv node and operator images without a registry (item 2 of issue 12).
#
#   images.sh build    cargo build --release of ringkv-node and ringkv-operator, then write
#                      OCI archives (oci-image.py) into the image cache
#   images.sh import   import the archives into the local cluster's containerd (k8s.io)
#   images.sh all      both (default)
#   images.sh names    print the image names
#   images.sh tag S T  the imported image S also under the name T (the e2e's image change)
#
# The images carry what deploy/docker/*.Dockerfile describe for users with a registry
# (FROM gcr.io/distroless/cc-debian12:nonroot): the binary at /usr/local/bin, uid/gid
# 65532 (`nonroot` in /etc/passwd), the same ENV/ENTRYPOINT/CMD/ports, and only glibc +
# libgcc from the host (found with `ldd`: no musl target can be fetched here), plus
# /etc/nsswitch.conf, the CA bundle and a /tmp. Names and tags are the defaults the chart
# (image.repository + appVersion) and the operator (DEFAULT_NODE_IMAGE =
# ghcr.io/ringkv/ringkv-node:<crate version>) use, so a plain `helm install` runs them
# with imagePullPolicy IfNotPresent and nothing is pulled.
#
# The release build uses its own target dir (RINGKV_IMAGE_TARGET, default
# ~/.cache/ringkv-image-target) so it never touches the workspace's target/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${RINGKV_IMAGE_TARGET:-$HOME/.cache/ringkv-image-target}
OUT=${RINGKV_IMAGE_OUT:-$HOME/.cache/ringkv-k8s/ringkv-images}
STATE=${RINGKV_K8S_STATE:-$HOME/.local/state/ringkv-k8s}
CTRD_SOCK=$STATE/containerd/containerd.sock

VERSION=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $2; exit}' "$ROOT/Cargo.toml")
APP_VERSION=$(awk -F'"' '/^appVersion:/{print $2}' "$ROOT/charts/ringkv/Chart.yaml")
OPERATOR_REPO=$(awk '/^image:/{p=1} p && /repository:/{print $2; exit}' "$ROOT/charts/ringkv/values.yaml")
NODE_IMAGE=ghcr.io/ringkv/ringkv-node:$VERSION        # operator/src/crd.rs DEFAULT_NODE_IMAGE
OPERATOR_IMAGE=$OPERATOR_REPO:$APP_VERSION             # charts/ringkv: image.repository:appVersion

log() { printf '%s [images] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ctr_bin() {
  local c
  for c in "${RINGKV_K8S_CACHE:-$HOME/.cache/ringkv-k8s}"/*/bin/ctr; do [[ -x $c ]] && { echo "$c"; return; }; done
  command -v ctr || die "no ctr: run tests/k8s/cluster.sh build"
}

cargo_build() {
  [[ $VERSION == "$APP_VERSION" ]] ||
    log "warning: crate version $VERSION differs from the chart's appVersion $APP_VERSION"
  log "cargo build --release (target $TARGET)"
  local t0=$SECONDS
  (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET nice -n 15 cargo build --release --locked \
    -p ringkv-node -p ringkv-operator)
  log "release build in $((SECONDS - t0))s"
}

# --file arguments for the shared libraries a binary loads, each at the path ldd names
# (content from the resolved file): the loader /lib64/ld-linux-x86-64.so.2, libc, libm,
# libgcc_s, ... Fails on a library ldd cannot find.
lib_files() { # binary
  local line path
  if ldd "$1" 2>&1 | grep -q "not a dynamic executable\|statically linked"; then return; fi
  while read -r line; do
    [[ $line == *"not found"* ]] && die "$1: $line"
    path=$(grep -o '/[^ ]*' <<<"$line" | head -1) || continue
    [[ -n $path ]] || continue
    printf -- '--file\n%s:%s:0755\n' "$(readlink -f "$path")" "$path"
  done < <(ldd "$1")
}

etc_files() { # dir: writes passwd, group, nsswitch.conf (distroless nonroot's)
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$1/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$1/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$1/nsswitch.conf"
}

pack() { # name binary out extra-args...
  local name=$1 bin=$2 out=$3; shift 3
  local tmp; tmp=$(mktemp -d)
  etc_files "$tmp"
  local args=()
  mapfile -t args < <(lib_files "$bin")
  local ca=()
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] && ca=(--file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644)
  python3 "$HERE/oci-image.py" --name "$name" --out "$out" \
    --file "$bin:/usr/local/bin/$(basename "$bin"):0755" "${args[@]}" "${ca[@]}" \
    --file "$tmp/passwd:/etc/passwd:0644" --file "$tmp/group:/etc/group:0644" \
    --file "$tmp/nsswitch.conf:/etc/nsswitch.conf:0644" \
    --dir tmp:1777 --dir home/nonroot:0755 \
    --user 65532:65532 --env PATH=/usr/local/bin:/usr/bin:/bin "$@" >&2
  rm -rf "$tmp"
  log "$name: $(du -h "$out" | cut -f1) ($(( ${#args[@]} / 2 )) shared libraries)"
}

build_images() {
  cargo_build
  mkdir -p "$OUT"
  local rel=$TARGET/release
  pack "$NODE_IMAGE" "$rel/ringkv-node" "$OUT/ringkv-node.tar" \
    --env RINGKV_LISTEN=0.0.0.0:8080 --env RINGKV_INTERNAL_LISTEN=0.0.0.0:8180 \
    --env RINGKV_DATA_DIR=/var/lib/ringkv/data --env RINGKV_LOG_FORMAT=json \
    --entrypoint '["/usr/local/bin/ringkv-node"]' \
    --label org.opencontainers.image.source=deploy/docker/node.Dockerfile
  pack "$OPERATOR_IMAGE" "$rel/ringkv-operator" "$OUT/ringkv-operator.tar" \
    --entrypoint '["/usr/local/bin/ringkv-operator"]' --cmd '["run"]' \
    --label org.opencontainers.image.source=deploy/docker/operator.Dockerfile
}

import_images() {
  [[ -S $CTRD_SOCK ]] || die "containerd is not running ($CTRD_SOCK): tests/k8s/cluster.sh up"
  local ctr f
  ctr=$(ctr_bin)
  for f in "$OUT/ringkv-node.tar" "$OUT/ringkv-operator.tar"; do
    [[ -f $f ]] || die "$f missing: $0 build"
    "$ctr" --address "$CTRD_SOCK" -n k8s.io images import --platform linux/amd64 "$f" 2>&1 |
      grep -v "cgroup v1 support is deprecated" >&2 || true
  done
  "$ctr" --address "$CTRD_SOCK" -n k8s.io images ls 2>/dev/null | grep ringkv/ >&2 ||
    die "images not listed after import"
}

tag_image() { # source target: the same image under a second name (as `docker tag`)
  [[ -S $CTRD_SOCK ]] || die "containerd is not running ($CTRD_SOCK): tests/k8s/cluster.sh up"
  "$(ctr_bin)" --address "$CTRD_SOCK" -n k8s.io images tag --force "$1" "$2" 2>&1 |
    grep -v "cgroup v1 support is deprecated" >&2 || true
  "$(ctr_bin)" --address "$CTRD_SOCK" -n k8s.io images ls -q 2>/dev/null | grep -qxF "$2" ||
    die "$2 not listed after tagging"
}

case ${1:-all} in
  build) build_images ;;
  import) import_images ;;
  all) build_images; import_images ;;
  names) echo "$NODE_IMAGE"; echo "$OPERATOR_IMAGE" ;;
  tag) tag_image "$2" "$3" ;;
  *) echo "usage: $0 build|import|all|names|tag SOURCE TARGET" >&2; exit 2 ;;
esac
