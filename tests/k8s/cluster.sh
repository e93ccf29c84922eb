#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, built from pinned sources.
#
#   cluster.sh up       build what is missing, start everything, wait for Ready
#   cluster.sh down     stop everything; remove mounts, netns, links, iptables rules
#   cluster.sh status   what runs
#   cluster.sh env      prints `export KUBECONFIG=...` (and PATH for kubectl/helm)
#   cluster.sh build    only build the binaries (into the cache)
#   cluster.sh check    smoke test: a pod, a Service's ClusterIP from the host, DNS, a PVC
#
# Versions are those pinned in go.mod beside this script. Binaries are cached in
# ${RINGKV_K8S_CACHE:-~/.cache/ringkv-k8s}/<kubernetes version>/bin, each stamped
# with its module version; cluster state (certs, etcd data, logs, kubelet and
# containerd roots) lives in ${RINGKV_K8S_STATE:-~/.local/state/ringkv-k8s} and
# is wiped by `down`. Must run as root (kubelet, containerd, iptables).
#
# Addresses: everything lives on links this script creates. A port-less bridge rkv-node0
# holds the node IP (10.242.0.1/32) and the route for the Service range
# (10.96.0.0/16: what kube-proxy does not DNAT is dropped there); pods sit on the bridge rkv0 (10.244.0.0/24). A FORWARD rule drops
# anything from the pod range that would leave by another link, CoreDNS serves
# only cluster.local (no upstream forwarding), and containerd's registry hosts
# point every pull at 127.0.0.1:1, so nothing is sent to any other address.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GOMOD=$HERE/go.mod

modver() { awk -v m="$1" '$1==m && $2 ~ /^v/ {print $2; exit}' "${2:-$GOMOD}"; }
K8S_VERSION=$(modver k8s.io/kubernetes)
CONTAINERD_VERSION=$(modver github.com/containerd/containerd/v2)
RUNC_VERSION=$(modver github.com/opencontainers/runc)
COREDNS_VERSION=$(modver github.com/coredns/coredns)
HELM_VERSION=$(modver helm.sh/helm/v3)
LPP_VERSION=$(modver github.com/rancher/local-path-provisioner)
PROM_VERSION=$(modver github.com/prometheus/prometheus "$HERE/prometheus/go.mod")
PAUSE_IMAGE=registry.k8s.io/pause:3.10.2 # containerd 2.x's default sandbox image name
COREDNS_IMAGE=ringkv.local/coredns:${COREDNS_VERSION}
BUSYBOX_IMAGE=ringkv.local/busybox:latest-local
LPP_IMAGE=ringkv.local/local-path-provisioner:${LPP_VERSION}

RECIPE_REV=1 # bump when the way binaries are built changes: everything rebuilds
CACHE_ROOT=${RINGKV_K8S_CACHE:-$HOME/.cache/ringkv-k8s}
# One directory per Kubernetes release; inside it each binary carries a stamp
# (.NAME.stamp = module@version and recipe) and is rebuilt when that changes.
BIN=$CACHE_ROOT/$K8S_VERSION/bin
IMAGES=$CACHE_ROOT/$K8S_VERSION/images
STATE=${RINGKV_K8S_STATE:-$HOME/.local/state/ringkv-k8s}
PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids
CTRD_SOCK=$STATE/containerd/containerd.sock
ADMIN_KUBECONFIG=$STATE/admin.kubeconfig

NODE_NAME=${RINGKV_K8S_NODE:-$(hostname | tr 'A-Z' 'a-z')}
NODE_LINK=rkv-node0
NODE_IP=10.242.0.1
BRIDGE=rkv0
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
POD_GW=10.244.0.1
SVC_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_SVC_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
FW_CHAIN=RINGKV-K8S-EGRESS

APT_PACKAGES=(etcd-server containernetworking-plugins iptables conntrack iproute2 openssl
  libseccomp-dev pkg-config gcc libc6-dev busybox-static curl python3)

log() { printf '%s [cluster] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- packages ---
ensure_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ------------------------------------------------------------------- build ---
# Each component is built from the module pinned in go.mod, with the version
# stamping its own release build uses. `nice` keeps the machine usable.
gobuild() { # out-dir cgo tags ldflags pkgs...   (GOBUILD_MODULE: another module dir)
  local out=$1 cgo=$2 tags=$3 ldflags=$4; shift 4
  (cd "${GOBUILD_MODULE:-$HERE}" && CGO_ENABLED=$cgo GOFLAGS="-mod=readonly -buildvcs=false" nice -n 10 \
    go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out/" "$@")
}

build_pause() { # Kubernetes' own pause.c, from the pinned k8s.io/kubernetes module
  local src
  src=$(cd "$HERE" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  [[ -f $src ]] || (cd "$HERE" && go mod download k8s.io/kubernetes)
  nice -n 10 gcc -Os -Wall -Werror -static -DVERSION="${PAUSE_IMAGE##*:}-ringkv" -o "$1/pause" "$src"
  strip "$1/pause"
}

stale() { # name stamp: true when $BIN/name is missing or was built from something else
  [[ ! -x $BIN/$1 || $(cat "$BIN/.$1.stamp" 2>/dev/null) != "$2" ]]
}

build() {
  ensure_packages
  local t0=$SECONDS tmp c p
  mkdir -p "$BIN"
  tmp=$(mktemp -d "$BIN/../tmp.XXXXXX")
  local -A stamp=()
  local k8s_ld="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    k8s_ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitTreeState=clean"
    k8s_ld+=" -X $p.gitMajor=$(echo "$K8S_VERSION" | cut -d. -f1 | tr -d v) -X $p.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  done
  local k8s_cmds=()
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    stamp[$c]="k8s.io/kubernetes@$K8S_VERSION r$RECIPE_REV"
    stale "$c" "${stamp[$c]}" && k8s_cmds+=("k8s.io/kubernetes/cmd/$c")
  done
  if ((${#k8s_cmds[@]})); then
    log "building kubernetes $K8S_VERSION: ${k8s_cmds[*]##*/}"
    gobuild "$tmp" 0 "" "$k8s_ld" "${k8s_cmds[@]}"
  fi
  for c in containerd containerd-shim-runc-v2 ctr; do
    stamp[$c]="github.com/containerd/containerd/v2@$CONTAINERD_VERSION r$RECIPE_REV"
  done
  if stale containerd "${stamp[containerd]}" || stale containerd-shim-runc-v2 "${stamp[containerd]}" || stale ctr "${stamp[containerd]}"; then
    log "building containerd $CONTAINERD_VERSION"
    local cd_ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
    cd_ld+=" -X github.com/containerd/containerd/v2/version.Revision=module"
    gobuild "$tmp" 0 "no_btrfs no_devmapper no_zfs" "$cd_ld" \
      github.com/containerd/containerd/v2/cmd/containerd \
      github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
      github.com/containerd/containerd/v2/cmd/ctr
  fi
  stamp[runc]="github.com/opencontainers/runc@$RUNC_VERSION r$RECIPE_REV"
  if stale runc "${stamp[runc]}"; then
    log "building runc $RUNC_VERSION (seccomp, cgo)"
    gobuild "$tmp" 1 "seccomp urfave_cli_no_docs" "-s -w -X main.version=${RUNC_VERSION#v}" \
      github.com/opencontainers/runc
  fi
  stamp[coredns]="github.com/coredns/coredns@$COREDNS_VERSION r$RECIPE_REV"
  if stale coredns "${stamp[coredns]}"; then
    log "building coredns $COREDNS_VERSION"
    gobuild "$tmp" 0 "" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
      github.com/coredns/coredns
  fi
  stamp[helm]="helm.sh/helm/v3@$HELM_VERSION r$RECIPE_REV"
  if stale helm "${stamp[helm]}"; then
    log "building helm $HELM_VERSION"
    local helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    helm_ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    gobuild "$tmp" 0 "" "$helm_ld" helm.sh/helm/v3/cmd/helm
  fi
  stamp[local-path-provisioner]="github.com/rancher/local-path-provisioner@$LPP_VERSION r$RECIPE_REV"
  if stale local-path-provisioner "${stamp[local-path-provisioner]}"; then
    log "building local-path-provisioner $LPP_VERSION"
    gobuild "$tmp" 0 "" "-s -w -X main.VERSION=$LPP_VERSION" github.com/rancher/local-path-provisioner
  fi
  stamp[prometheus]="github.com/prometheus/prometheus@$PROM_VERSION r$RECIPE_REV"
  if stale prometheus "${stamp[prometheus]}"; then
    # Its own module (prometheus/go.mod; why not Debian's package is said there), with
    # only the kubernetes service discovery compiled in.
    log "building prometheus $PROM_VERSION (kubernetes_sd only)"
    local v=${PROM_VERSION#v0.}
    GOBUILD_MODULE=$HERE/prometheus gobuild "$tmp" 0 "remove_all_sd enable_kubernetes_sd" \
      "-s -w -X github.com/prometheus/common/version.Version=3.${v%%.*}.${v#*.}" \
      github.com/prometheus/prometheus/cmd/prometheus
  fi
  stamp[pause]="k8s.io/kubernetes@$K8S_VERSION build/pause/linux/pause.c r$RECIPE_REV"
  if stale pause "${stamp[pause]}"; then log "building pause"; build_pause "$tmp"; fi
  shopt -s nullglob
  for p in "$tmp"/*; do
    c=${p##*/}
    mv -f "$p" "$BIN/$c"
    echo "${stamp[$c]}" >"$BIN/.$c.stamp"
    rm -f "$IMAGES/$c.tar" # its image is rebuilt from the new binary
  done
  shopt -u nullglob
  rmdir "$tmp"
  log "binaries ready in $BIN ($((SECONDS - t0))s)"
}

# --------------------------------------------------------------------- PKI ---
cert() { # name CN O "SANs" (SANs like DNS:x,IP:y or empty) usage(client|server|both)
  local name=$1 cn=$2 o=$3 san=$4 usage=$5 eku
  [[ -f $PKI/$name.crt ]] && return 0
  case $usage in client) eku=clientAuth ;; server) eku=serverAuth ;; *) eku=serverAuth,clientAuth ;; esac
  local subj="/CN=$cn"
  [[ -n $o ]] && subj="/O=$o$subj"
  openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

kubeconfig() { # file user cert-name
  local f=$1 user=$2 c=$3
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ringkv-local
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$c.crt")
    client-key-data: $(base64 -w0 <"$PKI/$c.key")
contexts:
- name: ringkv-local
  context: {cluster: ringkv-local, user: $user}
current-context: ringkv-local
EOF
  chmod 600 "$f"
}

pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [[ ! -f $PKI/ca.crt ]]; then
    openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=ringkv-local-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt"
  fi
  [[ -f $PKI/sa.key ]] || {
    openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  }
  local svc="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  cert etcd-server etcd-server "" "DNS:localhost,IP:127.0.0.1" both
  cert apiserver-etcd-client kube-apiserver-etcd-client "" "" client
  cert apiserver kube-apiserver "" "$svc,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP" server
  cert apiserver-kubelet-client kube-apiserver-kubelet-client "" "" client
  cert admin ringkv-admin system:masters "" client
  cert controller-manager system:kube-controller-manager "" "" client
  cert scheduler system:kube-scheduler "" "" client
  cert kube-proxy system:kube-proxy "" "" client
  cert kubelet-client "system:node:$NODE_NAME" system:nodes "" client
  cert kubelet-server "$NODE_NAME" "" "DNS:$NODE_NAME,DNS:localhost,IP:$NODE_IP,IP:127.0.0.1" server
  kubeconfig "$ADMIN_KUBECONFIG" ringkv-admin admin
  kubeconfig "$STATE/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$STATE/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client
}

# ----------------------------------------------------------------- network ---
save_sysctl() { # name value: set, remembering the old value for `down`
  local f=/proc/sys/${1//.//} old
  old=$(cat "$f")
  grep -q "^$1 " "$STATE/sysctl.saved" 2>/dev/null || echo "$1 $old" >>"$STATE/sysctl.saved"
  [[ $old == "$2" ]] || echo "$2" >"$f"
}

network_up() {
  # a bridge with no ports: this kernel has no "dummy" link type (CONFIG_DUMMY unset)
  ip link show "$NODE_LINK" >/dev/null 2>&1 || ip link add "$NODE_LINK" type bridge
  ip addr replace "$NODE_IP/32" dev "$NODE_LINK"
  ip link set "$NODE_LINK" up
  # Service addresses route into that port-less link: kube-proxy's DNAT sends real
  # Services to pods on rkv0, and anything else is dropped here, never sent out.
  ip route replace "$SVC_CIDR" dev "$NODE_LINK"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$POD_GW/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  save_sysctl net.ipv4.ip_forward 1
  save_sysctl net.bridge.bridge-nf-call-iptables 1
  iptables -w -N "$FW_CHAIN" 2>/dev/null || iptables -w -F "$FW_CHAIN"
  iptables -w -A "$FW_CHAIN" -s "$POD_CIDR" -o "$BRIDGE" -j RETURN
  iptables -w -A "$FW_CHAIN" -s "$POD_CIDR" -j DROP
  iptables -w -C FORWARD -j "$FW_CHAIN" 2>/dev/null || iptables -w -I FORWARD 1 -j "$FW_CHAIN"
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  cat >"$STATE/cni/net.d/10-ringkv.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ringkv",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$POD_GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

network_down() {
  iptables -w -D FORWARD -j "$FW_CHAIN" 2>/dev/null || true
  iptables -w -F "$FW_CHAIN" 2>/dev/null || true
  iptables -w -X "$FW_CHAIN" 2>/dev/null || true
  # Chains the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT),
  # kube-proxy (after its own --cleanup) and the CNI plugins (CNI-*) added: the
  # rules that jump to them first, then the chains themselves.
  local ipt t c
  for ipt in iptables ip6tables; do
    for t in filter nat mangle; do
      for c in $($ipt -w -t "$t" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        $ipt -w -t "$t" -S | awk -v c="$c" '$1=="-A" && $0 ~ ("-j " c "( |$)") {sub("^-A","-D"); print}' |
          while read -r rule; do eval "$ipt" -w -t "$t" "$rule" 2>/dev/null || true; done
      done
      for c in $($ipt -w -t "$t" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        $ipt -w -t "$t" -F "$c" 2>/dev/null || true
      done
      for c in $($ipt -w -t "$t" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
        $ipt -w -t "$t" -X "$c" 2>/dev/null || true
      done
    done
  done
  ip route del "$SVC_CIDR" dev "$NODE_LINK" 2>/dev/null || true
  ip link del "$NODE_LINK" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if [[ -f $STATE/sysctl.saved ]]; then
    while read -r k v; do echo "$v" >"/proc/sys/${k//.//}" || true; done <"$STATE/sysctl.saved"
    rm -f "$STATE/sysctl.saved"
  fi
}

# --------------------------------------------------------------- processes ---
start() { # name cmd...
  local name=$1; shift
  if running "$name"; then return 0; fi
  mkdir -p "$LOGS" "$PIDS"
  setsid nohup "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
}

write_if_changed() { # file: stdin becomes its content, unless it already is that
  local tmp; tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

running() { local p; p=$(cat "$PIDS/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

stop() { # name
  local p i
  p=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$PIDS/$1.pid"
}

wait_for() { # what seconds cmd...
  local what=$1 secs=$2 deadline=$((SECONDS + $2)); shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what not ready after ${secs}s (logs: $LOGS)"
    sleep 0.5
  done
}

admin_curl() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$@"; }
kc() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" "$@"; }
ctr_() { "$BIN/ctr" --address "$CTRD_SOCK" -n k8s.io "$@"; }

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  start etcd /usr/bin/etcd --name "$NODE_NAME" --data-dir "$STATE/etcd" \
    --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
    --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" \
    --client-cert-auth --trusted-ca-file "$PKI/ca.crt" --snapshot-count 10000 --quota-backend-bytes 2147483648
  wait_for etcd 30 curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
    --key "$PKI/apiserver-etcd-client.key" https://127.0.0.1:2379/health
}

start_apiserver() {
  start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
    --etcd-servers https://127.0.0.1:2379 --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --authorization-mode Node,RBAC --anonymous-auth=false \
    --enable-admission-plugins NodeRestriction \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SVC_CIDR" --allow-privileged=true \
    --profiling=false --v=1
  # /readyz needs an identity (anonymous auth is off): the admin client cert.
  wait_for kube-apiserver 90 admin_curl "https://$NODE_IP:6443/readyz"
}

start_controllers() {
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SVC_CIDR" --v=1
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --v=1
}

start_containerd() {
  mkdir -p "$STATE/containerd/root" "$STATE/containerd/state" "$STATE/containerd/certs.d/_default"
  # Any pull goes to a closed port on loopback: images come only from `ctr import`.
  cat >"$STATE/containerd/certs.d/_default/hosts.toml" <<EOF
server = "http://127.0.0.1:1"
EOF
  cat >"$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  address = "$CTRD_SOCK.debug"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$STATE/containerd/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # This sandbox drops CAP_SYS_RESOURCE from every process's bounding set, so
  # nothing may lower oom_score_adj (runc: "failed to update
  # /proc/self/oom_score_adj: Permission denied" for the pause container's -998).
  # Clamp pods' values to containerd's own instead, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$STATE/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$BIN/runc"
        Root = "$STATE/runc"
        SystemdCgroup = false
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
EOF
  PATH="$BIN:$PATH" start containerd "$BIN/containerd" --config "$STATE/containerd/config.toml"
  wait_for containerd 30 "$BIN/ctr" --address "$CTRD_SOCK" version
}

# Images: the pause image (Kubernetes' pause.c), CoreDNS and a busybox test image,
# written as OCI archives by oci-image.py and imported: no registry is involved.
import_images() {
  local dir=$IMAGES have
  mkdir -p "$dir"
  have=$(ctr_ images ls -q)
  if ! grep -qx "$PAUSE_IMAGE" <<<"$have"; then
    [[ -f $dir/pause.tar ]] || python3 "$HERE/oci-image.py" --name "$PAUSE_IMAGE" --out "$dir/pause.tar" \
      --file "$BIN/pause:/pause:0755" --entrypoint '["/pause"]' --user 65535:65535 >/dev/null
    ctr_ images import --platform linux/amd64 "$dir/pause.tar" >/dev/null
  fi
  if ! grep -qx "$COREDNS_IMAGE" <<<"$have"; then
    [[ -f $dir/coredns.tar ]] || python3 "$HERE/oci-image.py" --name "$COREDNS_IMAGE" --out "$dir/coredns.tar" \
      --file "$BIN/coredns:/coredns:0755" --entrypoint '["/coredns"]' --user 65532:65532 >/dev/null
    ctr_ images import --platform linux/amd64 "$dir/coredns.tar" >/dev/null
  fi
  if ! grep -qx "$BUSYBOX_IMAGE" <<<"$have"; then
    if [[ ! -f $dir/busybox.tar ]]; then
      local links=() a
      for a in sh ls cat echo env sleep httpd wget nc nslookup hostname id ps mkdir rm touch date grep; do
        links+=(--symlink "bin/$a:busybox")
      done
      python3 "$HERE/oci-image.py" --name "$BUSYBOX_IMAGE" --out "$dir/busybox.tar" \
        --file /bin/busybox:/bin/busybox:0755 "${links[@]}" --dir tmp:1777 \
        --cmd '["/bin/sh"]' --user 65532:65532 >/dev/null
    fi
    ctr_ images import --platform linux/amd64 "$dir/busybox.tar" >/dev/null
  fi
  if ! grep -qx "$LPP_IMAGE" <<<"$have"; then
    [[ -f $dir/local-path-provisioner.tar ]] || python3 "$HERE/oci-image.py" --name "$LPP_IMAGE" \
      --out "$dir/local-path-provisioner.tar" --file "$BIN/local-path-provisioner:/usr/bin/local-path-provisioner:0755" \
      --user 65532:65532 >/dev/null
    ctr_ images import --platform linux/amd64 "$dir/local-path-provisioner.tar" >/dev/null
  fi
}

start_kubelet() {
  mkdir -p "$STATE/kubelet"
  echo "# no upstream resolvers: pods resolve only $CLUSTER_DOMAIN through CoreDNS" >"$STATE/resolv.conf"
  write_if_changed "$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTRD_SOCK
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SVC_IP]
resolvConf: $STATE/resolv.conf
hairpinMode: hairpin-veth
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
rotateCertificates: false
podLogsDir: $STATE/pod-logs
oomScoreAdj: 0 # see restrict_oom_score_adj above: the default -999 is refused here
EOF
  start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  # Only when it changed: kube-proxy watches its config file and exits when it is rewritten
  # ("content of the proxy server's configuration file was updated"), so a second `up`
  # of a running cluster used to stop it (and every ClusterIP with it).
  write_if_changed "$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
conntrack: {maxPerCore: 0}
iptables: {localhostNodePorts: false}
oomScoreAdj: 0
EOF
  start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy.yaml" --v=1
}

addons() {
  kc apply -f - >/dev/null <<EOF
# The API server calls kubelets with this identity (logs, exec, port-forward).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ringkv-local:apiserver-kubelet-client}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:kubelet-api-admin}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # Only $CLUSTER_DOMAIN (and reverse zones) are served; there is no "forward"
  # plugin, so no query ever leaves the machine.
  Corefile: |
    .:1053 {
        errors
        health :8080 {
            lameduck 5s
        }
        ready :8181
        kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        resources:
          requests: {cpu: 50m, memory: 40Mi}
          limits: {memory: 170Mi}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          initialDelaySeconds: 5
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
      volumes:
      - name: config
        configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
  annotations: {prometheus.io/port: "9153", prometheus.io/scrape: "true"}
spec:
  clusterIP: $DNS_SVC_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
  - {name: metrics, port: 9153, protocol: TCP}
EOF
}

# PersistentVolumes: rancher's local-path-provisioner (built from its module),
# directories under $STATE/local-path made by a helper pod (mode 0777, so
# non-root pods can write: the controller-manager's host-path provisioner makes
# them 0750 root, which a non-root pod cannot use), default StorageClass "standard".
storage() {
  mkdir -p "$STATE/local-path"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: local-path-storage
  labels: {pod-security.kubernetes.io/enforce: privileged}
---
apiVersion: v1
kind: ServiceAccount # the name the provisioner gives its helper pods
metadata: {name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: local-path-provisioner, namespace: local-path-storage}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: local-path-provisioner}
rules:
- apiGroups: [""]
  resources: [nodes, persistentvolumeclaims, configmaps, pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: local-path-provisioner, namespace: local-path-storage}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: local-path-provisioner}
subjects: [{kind: ServiceAccount, name: local-path-provisioner-service-account, namespace: local-path-storage}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: local-path-provisioner}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: local-path-provisioner}
subjects: [{kind: ServiceAccount, name: local-path-provisioner-service-account, namespace: local-path-storage}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  config.json: |-
    {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$STATE/local-path"]}]}
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
  helperPod.yaml: |-
    apiVersion: v1
    kind: Pod
    metadata:
      name: helper-pod
    spec:
      priorityClassName: system-node-critical
      tolerations:
      - {key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}
      securityContext: {runAsUser: 0}
      containers:
      - name: helper-pod
        image: $BUSYBOX_IMAGE
        imagePullPolicy: Never
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: local-path-provisioner, namespace: local-path-storage}
spec:
  replicas: 1
  selector: {matchLabels: {app: local-path-provisioner}}
  template:
    metadata: {labels: {app: local-path-provisioner}}
    spec:
      serviceAccountName: local-path-provisioner-service-account
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: local-path-provisioner
        image: $LPP_IMAGE
        imagePullPolicy: Never
        command: [local-path-provisioner, start, --config, /etc/config/config.json]
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts: [{name: config, mountPath: /etc/config/}]
        env:
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - {name: CONFIG_MOUNT_PATH, value: /etc/config/}
      volumes: [{name: config, configMap: {name: local-path-config}}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
}

node_ready() {
  [[ $(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

up() {
  [[ $EUID -eq 0 ]] || die "run as root"
  local t0=$SECONDS
  build
  log "starting cluster (state in $STATE)"
  mkdir -p "$STATE"
  pki
  network_up
  start_etcd
  start_apiserver
  log "kube-apiserver ready ($((SECONDS - t0))s)"
  start_controllers
  start_containerd
  import_images
  start_kubelet
  wait_for "node registration" 60 kc get node "$NODE_NAME"
  addons
  storage
  wait_for "node Ready" 120 node_ready
  wait_for "CoreDNS" 120 kc -n kube-system rollout status deploy/coredns --timeout=2s
  wait_for "local-path-provisioner" 120 kc -n local-path-storage rollout status deploy/local-path-provisioner --timeout=2s
  log "cluster up in $((SECONDS - t0))s: node $NODE_NAME Ready; eval \"\$(bash $0 env)\""
}

# ----------------------------------------------------------------- down ---
down() {
  [[ $EUID -eq 0 ]] || die "run as root"
  local t0=$SECONDS
  stop kube-proxy
  stop kubelet
  if running containerd; then
    # kill every task and remove sandboxes so the CNI plugins release addresses
    local ids id
    ids=$(ctr_ tasks ls -q 2>/dev/null || true)
    for id in $ids; do ctr_ tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
    sleep 1
    for id in $ids; do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # shims outlive containerd: find ours by the socket path in their command line
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-address $CTRD_SOCK" || continue
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
  # whatever still runs in the pods' cgroups (the kubelet's kubepods tree)
  local pids
  pids=$(cat /sys/fs/cgroup/pids/kubepods/cgroup.procs $(find /sys/fs/cgroup/pids/kubepods -mindepth 1 -name cgroup.procs 2>/dev/null) 2>/dev/null || true)
  if [[ -n $pids ]]; then
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  if [[ -x $BIN/kube-proxy ]]; then
    "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  # mounts under our state dir (kubelet volumes, containerd rootfs and shm), deepest first
  local m
  for m in $(awk -v s="$STATE/" 'index($2, s) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  # network namespaces containerd created for our pods
  if [[ -d /run/netns ]]; then
    for m in /run/netns/cni-*; do
      [[ -e $m ]] || continue
      umount "$m" 2>/dev/null || true
      rm -f "$m"
    done
  fi
  network_down
  # cgroups the kubelet made (cgroupfs driver) in every v1 hierarchy, deepest first
  for m in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $m ]] && find "$m" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # results cached by libcni for our network (containerd keeps them in /var/lib/cni)
  rm -f /var/lib/cni/results/ringkv-* /var/lib/cni/results/cni-loopback-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  # the kubelet's fixed log paths: /var/log/containers holds symlinks to pod logs
  for m in /var/log/containers/*.log; do
    [[ -L $m ]] && rm -f "$m"
  done
  rmdir /var/log/containers /var/log/pods 2>/dev/null || true
  # containerd keeps its shims' sockets in the fixed /run/containerd/s (ours is the
  # only containerd on this machine)
  rm -rf /run/containerd/s
  # and the kubelet its device-plugin socket in the fixed /var/lib/kubelet/device-plugins
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null || true
  rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true
  rm -rf "$STATE"
  log "down in $((SECONDS - t0))s"
}

status() {
  local c rc=0
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    if running "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(cat "$PIDS/$c.pid")"
    else printf '%-24s stopped\n' "$c"; rc=1; fi
  done
  echo "binaries: $BIN ($( [[ -x $BIN/kubelet ]] && echo built || echo 'not built'))"
  if running kube-apiserver; then
    kc get nodes -o wide 2>/dev/null || true
    kc get pods -A 2>/dev/null || true
  fi
  return $rc
}

env_() {
  echo "export KUBECONFIG=$ADMIN_KUBECONFIG"
  echo "export PATH=$BIN:\$PATH"
}

# A pod from the local busybox image serving HTTP, a Service in front of it,
# the ClusterIP answered from the host through kube-proxy, DNS from a pod, and a
# PVC bound by the host-path provisioner.
check() {
  local ns=ringkv-smoke t0=$SECONDS
  kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f - >/dev/null
  kc label --overwrite ns "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
  kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: web
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'mkdir -p /tmp/www && echo "hello from \$(hostname)" > /tmp/www/index.html && echo ok > /data/probe && exec httpd -f -p 8080 -h /tmp/www']
    ports: [{containerPort: 8080}]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
  kc -n "$ns" wait --for=condition=Ready pod/web --timeout=120s >/dev/null
  local ip
  ip=$(kc -n "$ns" get svc web -o jsonpath='{.spec.clusterIP}')
  wait_for "ClusterIP $ip" 30 curl -sf "http://$ip/"
  echo "ClusterIP $ip from host: $(curl -sf "http://$ip/")"
  echo "DNS from pod: $(kc -n "$ns" exec web -- nslookup "web.$ns.svc.$CLUSTER_DOMAIN" | grep -A1 "^Name" | tr '\n' ' ')"
  echo "Service by name from pod: $(kc -n "$ns" exec web -- wget -qO- "http://web.$ns.svc.$CLUSTER_DOMAIN/")"
  echo "name outside $CLUSTER_DOMAIN (answered locally, never forwarded): $(kc -n "$ns" exec web -- nslookup example.com 2>&1 | grep -iE "can't|refused|server fail|NXDOMAIN" | head -1)"
  echo "PVC: $(kc -n "$ns" get pvc data -o jsonpath='{.status.phase} {.spec.volumeName}')"
  kc delete namespace "$ns" --wait=true >/dev/null
  echo "check passed in $((SECONDS - t0))s"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_ ;;
  build) build ;;
  check) check ;;
  *) echo "usage: $0 up|down|status|env|build|check" >&2; exit 2 ;;
esac
