#!/usr/bin/env bash
# A first end-to-end check of ringkv on the local cluster (item 3 of issue 12, first slice).
#
#   bash tests/k8s/cluster.sh up && bash tests/k8s/images.sh all && bash tests/k8s/e2e.sh
#
# Everything is done as a user types it (README "Run on Kubernetes"): helm install of
# charts/ringkv, kubectl apply of deploy/samples, curl through the client Service's
# ClusterIP (kube-proxy) and through `kubectl port-forward svc/demo 8080:8080`. Each check
# prints PASS or FAIL with what it saw; any FAIL makes the exit status 1 and prints the
# operator's and the nodes' logs. Every wait is bounded (the bounds are below).
#
# The cluster runs the operator's default TLS (Managed): the client port is HTTPS only,
# with a certificate for the Service's names (demo.$NS.svc) and the pods'
# (demo-N.demo-peers.$NS.svc) but no IP address. So, as a user outside the cluster does,
# every curl trusts the CA from the ConfigMap demo-ca-bundle and connects those names to
# the ClusterIP or a pod IP (curl --connect-to), through a per-run .curlrc (write_curlrc);
# later it also carries the admin token.
#
# E2E_KEEP=1 leaves the release and the cluster's objects in place at the end, and the
# curl setup (its directory is printed: .curlrc, the CA, the token file).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
eval "$(bash "$HERE/cluster.sh" env)"

OP_NS=ringkv-system
NS=default                 # deploy/samples/small.yaml has no namespace: kubectl's default
PF_PORT=${E2E_PF_PORT:-8080}
# Bounds (seconds unless kubectl's own --timeout syntax)
T_OPERATOR=180             # operator rollout + Lease
T_READY=10m                # kubectl wait kvc/demo Ready (README's bound)
T_POD_BACK=300             # a deleted node pod back, Ready
T_DELETE=180               # kvc deletion and owned objects gone
T_RENEW=180                # a forced certificate renewal served by every pod (kubelet
                           # updates a Secret volume within about 90 s)
SVC=demo.$NS.svc           # the client Service by the name the nodes' certificate has

FAILS=0
T0=$SECONDS
pass() { printf 'PASS  %-44s %s\n' "$1" "$2"; }
fail() { printf 'FAIL  %-44s %s\n' "$1" "$2"; FAILS=$((FAILS + 1)); }
check() { # name ok(0/1) seen
  if [[ $2 == 0 ]]; then pass "$1" "$3"; else fail "$1" "$3"; fi
}
info() { printf '....  %s\n' "$*"; }
k() { kubectl "$@"; }
elapsed() { echo "$((SECONDS - T0))s"; }

# retry until the command succeeds or the bound passes
until_ok() { # seconds cmd...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 1
  done
}

# Every curl of this script reads $CURL_HOME/.curlrc (curl -q, as the first option,
# skips it): trust the cluster's CA ($CA, from the ConfigMap demo-ca-bundle), connect
# $SVC:8080 to the client Service's ClusterIP ($ip), and, once the cluster has tokens,
# send $TOKEN. Rewritten whenever one of those changes.
CURL_HOME=$(mktemp -d); export CURL_HOME
CA=$CURL_HOME/ca.crt
TOKEN=
write_curlrc() {
  {
    echo "cacert = \"$CA\""
    echo "connect-to = \"$SVC:8080:$ip:8080\""
    [[ -z $TOKEN ]] || echo "header = \"Authorization: Bearer $TOKEN\""
  } >"$CURL_HOME/.curlrc"
}
# curl with the CA and the ClusterIP but without the token, whatever the .curlrc says
anon() { curl -q --cacert "$CA" --connect-to "$SVC:8080:$ip:8080" "$@"; }
# A node pod by the name its certificate has: `curl "${pod_at[@]}" "$pod_url/..."` after
# `at_pod demo-2 8080` connects https://demo-2.demo-peers.$NS.svc:8080 to the pod's IP.
at_pod() { # pod port: sets pod_url, pod_ip and pod_at
  pod_ip=$(k -n "$NS" get pod "$1" -o jsonpath='{.status.podIP}')
  pod_url=https://$1.demo-peers.$NS.svc:$2
  pod_at=(--connect-to "$1.demo-peers.$NS.svc:$2:$pod_ip:$2")
}
# The serial number of the certificate served at ip:port, as status.tls.serial writes it
# (lowercase hex, no leading zeros; openssl prints upper case). TLS 1.3 sends the server's
# certificate before it asks for the client's, so this works on the mutual TLS port too.
served_serial() { # ip port
  timeout 10 openssl s_client -connect "$1:$2" -servername "$SVC" </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | norm_serial
}
norm_serial() { sed 's/^serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//'; }
kvc_serial() { k -n "$NS" get kvc demo -o jsonpath='{.status.tls.serial}' | norm_serial; }

dump() {
  echo "==================== diagnostics ===================="
  k get kvc -A -o wide 2>&1
  k get pods,sts,svc,pdb,pvc -A -o wide 2>&1 | grep -v kube-system
  k describe kvc -n "$NS" demo 2>&1 | tail -40
  k get events -n "$NS" --sort-by=.lastTimestamp 2>&1 | tail -40
  k get events -n "$OP_NS" --sort-by=.lastTimestamp 2>&1 | tail -20
  local p
  for p in $(k -n "$OP_NS" get pods -l app.kubernetes.io/name=ringkv-operator -o name 2>/dev/null); do
    echo "---- logs $p"; k -n "$OP_NS" logs "$p" --tail=200 2>&1
  done
  for p in $(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o name 2>/dev/null); do
    echo "---- logs $p"; k -n "$NS" logs "$p" --tail=100 2>&1
    echo "---- previous logs $p"; k -n "$NS" logs "$p" --previous --tail=50 2>&1 | tail -50
  done
}

finish() {
  [[ -n ${E2E_KEEP:-} ]] || rm -rf "$CURL_HOME"
  [[ -n ${PF_PID:-} ]] && kill "$PF_PID" 2>/dev/null
  [[ -n ${WATCH_PID:-} ]] && kill "$WATCH_PID" 2>/dev/null
  [[ -n ${LOAD_PID:-} ]] && kill "$LOAD_PID" 2>/dev/null
  [[ -n ${PROM_PID:-} ]] && kill "$PROM_PID" 2>/dev/null
  if ((FAILS > 0)); then
    dump
    echo "e2e: $FAILS check(s) FAILED in $(elapsed)"
    cleanup
    exit 1
  fi
  echo "e2e: all checks passed in $(elapsed)"
  cleanup
}
cleanup() {
  [[ -n ${E2E_KEEP:-} ]] && return
  k -n "$NS" delete kvc demo --ignore-not-found --timeout=120s >/dev/null 2>&1
  k -n "$NS" delete pvc -l app.kubernetes.io/instance=demo --ignore-not-found --wait=false >/dev/null 2>&1
  k -n "$NS" delete secret demo-tokens --ignore-not-found >/dev/null 2>&1
  k -n "$NS" delete kvc prov --ignore-not-found --timeout=120s >/dev/null 2>&1
  k -n "$NS" delete secret prov-tls prov-operator --ignore-not-found >/dev/null 2>&1
  helm uninstall ringkv -n "$OP_NS" >/dev/null 2>&1
}
trap finish EXIT

k get --raw /readyz >/dev/null 2>&1 || { echo "no cluster: bash tests/k8s/cluster.sh up"; FAILS=1; exit 1; }
# ------------------------------------------------------------ helm install ---
# Both namespaces enforce the restricted Pod Security Standard (issue 15): the operator's
# pod and the node pods it makes must be admitted under it.
for ns in "$OP_NS" "$NS"; do
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label --overwrite ns "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
done
t=$SECONDS
out=$(helm install ringkv charts/ringkv -n "$OP_NS" --create-namespace 2>&1); rc=$?
check "helm install" $rc "$(head -1 <<<"$out") (rc $rc, $((SECONDS - t))s)"
t=$SECONDS
out=$(k -n "$OP_NS" rollout status deploy/ringkv --timeout=${T_OPERATOR}s 2>&1); rc=$?
check "operator pods Ready" $rc "$(tail -1 <<<"$out") ($((SECONDS - t))s)"
k -n "$OP_NS" get pods -o wide
holder() { k -n "$OP_NS" get lease ringkv -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
op_pods() { k -n "$OP_NS" get pods -l app.kubernetes.io/name=ringkv-operator --field-selector=status.phase=Running -o jsonpath='{.items[*].metadata.name}'; }
held() { local h; h=$(holder); [[ -n $h && " $(op_pods) " == *" $h "* ]]; }
t=$SECONDS
stale=$(holder); [[ " $(op_pods) " == *" $stale "* ]] && stale=
until_ok "$T_OPERATOR" held; rc=$?
check "operator Lease held by a running pod" $rc "holder '$(holder)' (pods: $(op_pods)) after $((SECONDS - t))s${stale:+; the Lease named '$stale' first (left by an earlier release)}"
h=$(holder)
sa=$(k -n "$OP_NS" get pod "$h" -o jsonpath='{.spec.serviceAccountName} uid={.spec.securityContext.runAsUser} image={.spec.containers[0].image}' 2>/dev/null)
info "leader runs as: $sa"
# The chart refuses, before creating anything, what would go wrong later: a second
# operator over the same KVClusters, a watchNamespace that does not exist.
out=$(helm install second charts/ringkv -n ringkv-second --create-namespace 2>&1); rc=$?
made=$(helm status second -n ringkv-second >/dev/null 2>&1 && echo "release created")
[[ $rc != 0 && $out == *"already watches every namespace"* && -z $made ]]
check "a second operator over the same clusters refused" $? "rc=$rc: $(grep -o 'the ringkv operator.*namespace' <<<"$out" | head -1 | cut -c1-150)${made:+; $made}"
out=$(helm install scoped charts/ringkv -n ringkv-second --set watchNamespace=no-such-ns 2>&1); rc=$?
[[ $rc != 0 && $out == *'watchNamespace "no-such-ns" does not exist'* ]]
check "a watchNamespace that does not exist refused" $? "rc=$rc: $(grep -o 'watchNamespace.*' <<<"$out" | head -1 | cut -c1-150)"
helm uninstall second -n ringkv-second >/dev/null 2>&1
k delete namespace ringkv-second --wait=false >/dev/null 2>&1

# ----------------------------------------------------------- small sample ---
k -n "$NS" delete pvc -l app.kubernetes.io/instance=demo --ignore-not-found >/dev/null 2>&1 # leftovers of an earlier run
out=$(k apply -f deploy/samples/small.yaml 2>&1); rc=$?
check "kubectl apply small.yaml" $rc "$out"
t=$SECONDS
out=$(k wait --for=condition=Ready kvc/demo --timeout=$T_READY 2>&1); rc=$?
check "kvc/demo Ready (bound $T_READY)" $rc "$out ($((SECONDS - t))s)"
sts_ready=$(k -n "$NS" get sts demo -o jsonpath='{.status.readyReplicas}')
eps=$(k -n "$NS" get endpointslices -l kubernetes.io/service-name=demo -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready} {end}' | grep -o true | wc -l)
# (the EndpointSlice controller may trail the StatefulSet's count by a moment: at least one
# endpoint, all three within seconds)
[[ $sts_ready == 3 && $eps -ge 1 ]]
check "when Ready: pods Ready, Service has endpoints" $? "StatefulSet readyReplicas=${sts_ready:-0}, ready endpoints of svc/demo=$eps (at the moment kvc/demo turned Ready)"
np=$(k -n "$NS" get networkpolicy demo-nodes -o json 2>/dev/null | python3 -c "
import json,sys
p=json.load(sys.stdin); s=p['spec']; own=[r['uid'] for r in p['metadata'].get('ownerReferences',[])]
internal=[r for r in s['ingress'] if any(q.get('port')==8180 for q in r.get('ports',[]))]
frm=internal[0]['from'] if internal else []
ok=(own==['$(k -n "$NS" get kvc demo -o jsonpath='{.metadata.uid}')'] and s['podSelector']['matchLabels'].get('app.kubernetes.io/instance')=='demo'
    and len(frm)==2 and frm[1]['namespaceSelector']['matchLabels']=={'kubernetes.io/metadata.name':'$OP_NS'}
    and frm[1]['podSelector']['matchLabels'].get('app.kubernetes.io/name')=='ringkv-operator')
print(('OK ' if ok else 'NO ')+'owner %s, internal port from %s' % (own, json.dumps(frm)))" 2>&1)
[[ $np == OK* ]]; check "NetworkPolicy demo-nodes: internal port to nodes and operator" $? "${np:-none}"
ready_eps() { [[ $(k -n "$NS" get endpointslices -l kubernetes.io/service-name=demo -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready} {end}' | grep -o true | wc -l) == 3 ]]; }
t=$SECONDS; until_ok 30 ready_eps; check "svc/demo has 3 ready endpoints" $? "within $((SECONDS - t))s"
k get pods -n "$NS" -l app.kubernetes.io/instance=demo -o wide
until_ok 60 test "$(k -n "$NS" get sts demo -o jsonpath='{.status.readyReplicas}')" = 3
ready_pods=$(k -n "$NS" get pods -l app.kubernetes.io/instance=demo \
  -o jsonpath='{range .items[*]}{.metadata.name}={.status.phase}/{.status.conditions[?(@.type=="Ready")].status} {end}')
n_ok=$(grep -o '=Running/True' <<<"$ready_pods" | wc -l)
[[ $n_ok == 3 ]]; check "three node pods Running and Ready" $? "$ready_pods"
kvc=$(k get kvc 2>&1)
echo "$kvc"
row=$(awk '$1=="demo"' <<<"$kvc")
read -r _ c_shards c_nodes c_ready c_epoch c_phase c_age <<<"$row"
[[ $c_shards == 4 && $c_nodes == 3 && $c_ready == 3 && $c_epoch =~ ^[0-9]+$ && $c_phase == Running && -n $c_age ]]
check "kubectl get kvc columns filled" $? "shards=$c_shards nodes=$c_nodes ready=$c_ready epoch=$c_epoch phase=$c_phase age=$c_age"
conds=$(k get kvc demo -o jsonpath='{range .status.conditions[*]}{.type}={.status}({.reason}) {end}')
info "conditions: $conds"

# ------------------------------------------------ TLS, Managed (the default) ---
# small.yaml says nothing of TLS: the operator made a CA (Secret demo-ca), the nodes'
# certificate (Secret demo-tls) and the CA bundle for clients (ConfigMap demo-ca-bundle),
# all owned by the KVCluster; both ports speak TLS only, the internal one mutual TLS.
kvc_uid=$(k -n "$NS" get kvc demo -o jsonpath='{.metadata.uid}')
tls_objs=$(k -n "$NS" get secret/demo-ca secret/demo-tls configmap/demo-ca-bundle -o json 2>/dev/null | python3 -c "
import json, sys
want = {('Secret', 'demo-ca'): ('Opaque', {'ca.crt', 'ca.key'}),
        ('Secret', 'demo-tls'): ('kubernetes.io/tls', {'tls.crt', 'tls.key', 'ca.crt'}),
        ('ConfigMap', 'demo-ca-bundle'): (None, {'ca.crt'})}
items = json.load(sys.stdin).get('items', [])
seen = {(o['kind'], o['metadata']['name']): o for o in items}
ok, out = True, []
for (kind, name), (typ, keys) in want.items():
    o = seen.get((kind, name))
    if o is None:
        ok = False; out.append('%s/%s missing' % (kind, name)); continue
    own = [r.get('uid') for r in o['metadata'].get('ownerReferences', [])]
    have = set(o.get('data') or {})  # the key names only: never print a Secret's data
    good = o.get('type') == typ and have >= keys and own == ['$kvc_uid']
    ok = ok and good
    out.append('%s/%s %s[%s] owner %s' % (kind, name, (o.get('type') + ' ') if o.get('type') else '',
               ','.join(sorted(have)), 'the kvc' if own == ['$kvc_uid'] else own))
print(('OK ' if ok else 'NO ') + '; '.join(out))" 2>&1)
[[ $tls_objs == OK* ]]; check "TLS: CA, certificate and bundle, owned by the kvc" $? "${tls_objs#?? }"
# What a user does: the CA from the ConfigMap, then https by the Service's name.
k -n "$NS" get cm demo-ca-bundle -o jsonpath='{.data.ca\.crt}' >"$CA"
ip=$(k -n "$NS" get svc demo -o jsonpath='{.spec.clusterIP}')
base=https://$SVC:8080
write_curlrc
ca_first=$(openssl x509 -in "$CA" -noout -fingerprint -sha256 2>&1)
info "client Service demo: $base at $ip, CA $(openssl x509 -in "$CA" -noout -subject 2>&1) (curl setup: $CURL_HOME/.curlrc)"
t=$SECONDS
until_ok 30 curl -sf --max-time 3 "$base/healthz"
r=$(curl -s --max-time 5 -w ' %{http_code}' "$base/healthz" 2>&1)
[[ $r == *' 200' ]]; check "TLS: https by the Service's name, with the CA" $? "$base/healthz: $r ($((SECONDS - t))s)"
out=$(curl -q -sS --max-time 5 "http://$ip:8080/healthz" 2>&1); rc=$?
[[ $rc != 0 && $out != *'"status"'* ]]; check "TLS: plain HTTP to the client port refused" $? "http://$ip:8080/healthz: curl rc $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-120)"
out=$(curl -q -sS --max-time 5 --connect-to "$SVC:8080:$ip:8080" "$base/healthz" 2>&1); rc=$?
[[ $rc == 60 ]]; check "TLS: https without the CA refused (unknown issuer)" $? "curl rc $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-120)"
# The internal port (8180) wants a client certificate the cluster's CA signed, and refuses
# anything else in the handshake. Under TLS 1.3 the client's side of the handshake is done
# before the server has judged its certificate, so curl sees the refusal (the server's
# alert) when it reads the answer: exit 56 (35 where it shows during the handshake; 55,
# "getpeername() failed", seen on the real cluster, where the node had already closed the
# connection when curl looked at it).
# A certificate the cluster's CA signed (made here from demo-ca's key, which the cluster
# admin may read) gets the ring: the refusals are about the certificate, not the network.
at_pod demo-1 8180
internal() { curl -q -sS --max-time 10 --cacert "$CA" "${pod_at[@]}" "$@" "$pod_url/internal/ring" 2>&1; }
refused_internal() { # rc out: refused in the handshake (curl's 35, 55 or 56), and no ring
  [[ ($1 == 35 || $1 == 55 || $1 == 56) && $2 != *'"shards"'* ]]
}
out=$(internal); rc=$?
refused_internal "$rc" "$out"; check "TLS: internal port refuses a client without a certificate" $? "curl rc $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-150)"
pki=$CURL_HOME/pki; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=e2e-intruder \
  -addext extendedKeyUsage=clientAuth -keyout "$pki/other.key" -out "$pki/other.crt" >/dev/null 2>&1
out=$(internal --cert "$pki/other.crt" --key "$pki/other.key"); rc=$?
refused_internal "$rc" "$out"; check "TLS: internal port refuses another CA's client certificate" $? "curl rc $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-150)"
k -n "$NS" get secret demo-ca -o jsonpath='{.data.ca\.key}' | base64 -d >"$pki/ca.key"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=e2e-client \
  -keyout "$pki/client.key" -out "$pki/client.csr" >/dev/null 2>&1
openssl x509 -req -in "$pki/client.csr" -CA "$CA" -CAkey "$pki/ca.key" -set_serial "0x$(openssl rand -hex 12)" -days 1 \
  -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n') \
  -out "$pki/client.crt" >/dev/null 2>&1
out=$(internal --cert "$pki/client.crt" --key "$pki/client.key" -w ' %{http_code}'); rc=$?
[[ $rc == 0 && $out == *'"shards"'*' 200' ]]; check "TLS: internal port answers a client the cluster's CA signed" $? "curl rc $rc: ${out:0:100}...${out: -4}"
rm -f "$pki/ca.key"
# status.tls names the certificate every pod serves.
has_serial() { [[ -n $(kvc_serial) ]]; }
until_ok 30 has_serial
tls_status=$(k -n "$NS" get kvc demo -o jsonpath='mode={.status.tls.mode} serial={.status.tls.serial} notAfter={.status.tls.notAfter}')
want=$(kvc_serial)
served=$(for p in $(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP} {end}'); do
  printf '%s:%s ' "${p%%=*}" "$(served_serial "${p#*=}" 8080)"; done)
[[ $tls_status == "mode=Managed "* && -n $want && $(wc -w <<<"$served") == 3 && $(tr ' ' '\n' <<<"$served" | grep -c ":$want$") == 3 ]]
check "TLS: status.tls Managed, its serial served by every pod" $? "$tls_status; served: $served"

# -------------------------------------------------------- invalid sample ---
out=$(k apply -f deploy/samples/invalid.yaml 2>&1); rc=$?
msg=$(tr '\n' ' ' <<<"$out")
[[ $rc != 0 && $out == *"is invalid"* ]] && ! k get kvc broken >/dev/null 2>&1
check "invalid.yaml refused by the API server" $? "rc=$rc: $msg"
for want in "spec.shards: Unsupported value: 3" "spec.replicationFactor: Unsupported value: 2"; do
  [[ $out == *"$want"* ]]; check "  message: $want" $? ""
done
# the CEL rule shows once the schema errors are gone (the API server skips CEL rules then)
out=$(k apply -f - 2>&1 <<'EOF'
apiVersion: ringkv.io/v1alpha1
kind: KVCluster
metadata: {name: broken}
spec: {shards: 4, replicationFactor: 3, nodes: 1}
EOF
); rc=$?
[[ $rc != 0 && $out == *"nodes must be at least replicationFactor"* ]]
check "nodes < replicationFactor refused (CEL)" $? "rc=$rc: $(tr '\n' ' ' <<<"$out")"

# Found by running against a real API server (issue 12), each refused or accepted up
# front now (server-side dry run: nothing is created).
dry() { printf 'apiVersion: ringkv.io/v1alpha1\nkind: KVCluster\n%s\n' "$1" | k apply --dry-run=server -o jsonpath='{.spec}' -f - 2>&1; }
out=$(dry $'metadata: {name: q}\nspec: {resources: {requests: {cpu: lots}}}')
[[ $out == *"spec.resources.requests.cpu: Invalid value: \"lots\""* ]]
check "malformed quantity refused at apply (was a 500 later)" $? "$(cut -c1-140 <<<"$out")"
out=$(dry 'metadata: {name: my.cluster}')
[[ $out == *"must be a DNS-1035 label"* ]]
check "a name no Service can carry refused" $? "$(cut -c1-140 <<<"$out")"
out=$(dry 'metadata: {name: nospec}')
[[ $out == *'"nodes":3'*'"replicationFactor":3'*'"shards":4'* ]]
check "spec left out: every default filled" $? "$(cut -c1-140 <<<"$out")"
out=$(dry $'metadata: {name: rf}\nspec: {replicationFactor: 5}')
[[ $out == *"when unset, nodes is 3"* ]]
check "replicationFactor 5 alone: the message names the default nodes" $? "$(cut -c1-160 <<<"$out")"

# ---------------------------------------------------- traffic: ClusterIP ---
# $base (https://demo.$NS.svc:8080) reaches the ClusterIP through the .curlrc (see above).
# curl_: prints "<status> <body>"
curl_() { local b; b=$(curl -s --max-time 10 -w '\n%{http_code}' "$@"); printf '%s %s' "$(tail -1 <<<"$b")" "$(sed '$d' <<<"$b" | tr '\n' ' ')"; }
until_ok 30 curl -sf --max-time 3 "$base/healthz"
r=$(curl_ -X PUT "$base/v1/kv/e2e/greeting" -d hello)
[[ $r == 200* ]]; check "ClusterIP PUT /v1/kv/e2e/greeting" $? "$r"
r=$(curl_ "$base/v1/kv/e2e/greeting")
[[ $r == 200*'"value":"hello"'* ]]; check "ClusterIP GET /v1/kv/e2e/greeting" $? "$r"
r=$(curl_ -X PUT "$base/v1/kv/e2e/bad" -H 'Content-Type: application/json' -d '{"value":')
[[ $r == 4* ]]; check "ClusterIP bad JSON body -> 4xx" $? "$r"
r=$(curl_ "$base/v1/kv/e2e/greeting?consistency=sometimes")
[[ $r == 4* ]]; check "ClusterIP bad query -> 4xx" $? "$r"
r=$(curl_ "$base/v1/kv/e2e/absent")
[[ $r == 404* ]]; check "ClusterIP GET absent key -> 404" $? "$r"
r=$(curl_ -X POST "$base/set" -d '{"key": "seedkey", "value": "bar"}' -H "Content-Type: application/json")
[[ $r == 201* ]]; check "seed route POST /set (JSON) -> 201" $? "$r"
r=$(curl_ "$base/get/seedkey")
[[ $r == "200 bar"* ]]; check "seed route GET /get/seedkey" $? "$r"
r=$(curl_ "$base/v1/cluster")
[[ $r == 200* ]]; check "ClusterIP GET /v1/cluster" $? "${r:0:160}"
# a watch: a stream opened, then a write, then the event
wf=$(mktemp)
curl -sN --max-time 20 "$base/v1/watch?prefix=e2e/w/" >"$wf" 2>&1 & WATCH_PID=$!
sleep 2
curl -s --max-time 10 -X PUT "$base/v1/kv/e2e/w/1" -d watched >/dev/null
until_ok 15 grep -q '"key":"e2e/w/1"' "$wf"; rc=$?
check "watch sees a PUT through the Service" $rc "$(grep -m1 '^data:' "$wf")"
kill "$WATCH_PID" 2>/dev/null; WATCH_PID=; rm -f "$wf"

# ----------------------------------------------- traffic: port-forward ---
pf_log=$(mktemp)
k -n "$NS" port-forward svc/demo "$PF_PORT:8080" >"$pf_log" 2>&1 & PF_PID=$!
# (localhost is among the certificate's names, for exactly this)
until_ok 20 curl -sf --max-time 2 "https://localhost:$PF_PORT/healthz"
r=$(curl_ -X PUT "https://localhost:$PF_PORT/v1/kv/greeting" -d hello)
[[ $r == 200* ]]; check "port-forward PUT /v1/kv/greeting" $? "$r ($(head -1 "$pf_log"))"
r=$(curl_ "https://localhost:$PF_PORT/v1/kv/greeting")
[[ $r == 200*'"value":"hello"'* ]]; check "port-forward GET /v1/kv/greeting" $? "$r"
kill "$PF_PID" 2>/dev/null; wait "$PF_PID" 2>/dev/null; PF_PID=; rm -f "$pf_log"

# ------------------------------------- reshard and scale under a load ---
# service-load (tests/src/bin/service-load.rs): clients doing put/delete/CAS/get on shared
# keys through the Service, every call recorded, plus a writer of unique keys; at the end
# the history must be linearizable and every acknowledged write read back.
# It reaches the Service as curl does: the URL by the certificate's name, the CA, and
# --resolve to the ClusterIP (and, once the cluster has tokens, the token).
LOAD_BIN=${E2E_LOAD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/service-load}
# (a binary built before it spoke TLS lacks --resolve: build it again then)
"$LOAD_BIN" --help 2>/dev/null | grep -q -- --resolve || cargo build -q -p ringkv-tests --bin service-load
load_args=(--url "$base" --ca "$CA" --resolve "$SVC:8080:$ip")
load_stop=$(mktemp -u); load_log=$(mktemp)
"$LOAD_BIN" "${load_args[@]}" --stop-file "$load_stop" >"$load_log" 2>&1 & LOAD_PID=$!
LOAD_T0=$SECONDS
sleep 5
cond_of() { # type -> "status/observedGeneration"
  k -n "$NS" get kvc demo -o jsonpath="{.status.conditions[?(@.type==\"$1\")].status}/{.status.conditions[?(@.type==\"$1\")].observedGeneration}"
}
settled() { # generation: Progressing False and Ready True, both at that generation or later
  local p r; p=$(cond_of Progressing); r=$(cond_of Ready)
  [[ ${p%/*} == False && ${p#*/} -ge $1 && ${r%/*} == True && ${r#*/} -ge $1 ]]
}
# What the ring says through the Service, checked against the wish: shard count, nodes,
# every shard with replicationFactor members and a leader, and replicas and leaders per
# node differing by at most one.
ring_shape() { # shards nodes
  curl -s --max-time 10 "$base/v1/cluster" | python3 -c "
import json, sys
want_shards, want_nodes, rf = $1, $2, 3
v = json.load(sys.stdin)
ring = v['ring']                      # every shard of the ring, hosted by this node or not
nodes = list(range(1, want_nodes + 1)) # pod demo-N is node N
reps = {n: 0 for n in nodes}; leads = {n: 0 for n in nodes}; bad = []; stray = set()
for s in ring:
    if len(s['members']) != rf or s['leader'] is None: bad.append(s['id'])
    for m in s['members']:
        if m in reps: reps[m] += 1
        else: stray.add(m)
    if s['leader'] in leads: leads[s['leader']] += 1
ok = (v['shard_count'] == want_shards and len(ring) == want_shards and not bad and not stray
      and max(reps.values()) - min(reps.values()) <= 1 and max(leads.values()) - min(leads.values()) <= 1)
print(('OK ' if ok else 'NO ') + 'shards %d, replicas/node %s, leaders/node %s%s%s' % (
    len(ring), [reps[n] for n in nodes], [leads[n] for n in nodes],
    ', shards without %d members and a leader: %s' % (rf, bad) if bad else '',
    ', replicas on nodes that should be gone: %s' % sorted(stray) if stray else ''))
" 2>&1
}
# SIGKILL a pod's container process on this (the only) host: the process whose cgroup
# names the pod's uid, by its command name. Prints the pids killed.
kill_pod_process() { # namespace pod comm
  local uid p pids=()
  uid=$(k -n "$1" get pod "$2" -o jsonpath='{.metadata.uid}')
  [[ -n $uid ]] || return 0
  for p in /proc/[0-9]*; do
    [[ $(cat "$p/comm" 2>/dev/null) == "$3" ]] || continue
    grep -qE "pod(${uid}|${uid//-/_})" "$p/cgroup" 2>/dev/null && pids+=("${p#/proc/}")
  done
  ((${#pids[@]})) && kill -9 "${pids[@]}"
  echo "${pids[*]}"
}
shape_ok() { [[ $(ring_shape "$1" "$2") == OK* ]]; }
T_STEP=600
step_to() { # shards nodes [kill-operator]
  local t=$SECONDS gen out rc seen
  info "patch shards=$1 nodes=$2 at load +$((SECONDS - LOAD_T0))s"
  out=$(k -n "$NS" patch kvc demo --type merge -p "{\"spec\":{\"shards\":$1,\"nodes\":$2}}" 2>&1)
  gen=$(k -n "$NS" get kvc demo -o jsonpath='{.metadata.generation}')
  if [[ ${3:-} == kill-operator ]]; then
    # The leading operator dies in the middle of the operation (SIGKILL, no chance to
    # release the Lease): the other replica must take the Lease and finish it.
    local old pids; old=$(holder)
    sleep 2
    pids=$(kill_pod_process "$OP_NS" "$old" ringkv-operator)
    # and its pod object, so that the kubelet does not restart it in place under the
    # same identity (the Lease would simply stay with it)
    k -n "$OP_NS" delete pod "$old" --grace-period=0 --force --wait=false >/dev/null 2>&1
    taken() { local h; h=$(holder); [[ -n $h && $h != "$old" ]] && held; }
    until_ok "$T_OPERATOR" taken; rc=$?
    [[ -n $pids ]] || rc=1
    check "  operator leader SIGKILLed mid-operation: Lease taken over" $rc "'$old' (pid ${pids:-not found}) killed; holder now '$(holder)' after $((SECONDS - t))s (Lease 15 s)"
  fi
  until_ok "$T_STEP" settled "$gen"; rc=$?
  check "patch shards=$1 nodes=$2: settled at generation $gen" $rc "$out; Progressing $(cond_of Progressing), Ready $(cond_of Ready) ($((SECONDS - t))s)"
  # the ring as the Service's nodes see it (a moment for the last leader transfer to show)
  until_ok 60 shape_ok "$1" "$2"
  seen=$(ring_shape "$1" "$2")
  [[ $seen == OK* ]]; check "  ring: $1 shards on $2 nodes, balanced" $? "${seen#?? }"
  local pods; pods=$(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o name | wc -l)
  [[ $pods == "$2" ]]; check "  $2 node pods" $? "$pods pods"
}
step_to 8 3
step_to 8 5
step_to 4 5 kill-operator
step_to 4 3
pvcs=$(k -n "$NS" get pvc -o name | grep -E 'data-demo-[45]$' | tr '\n' ' ')
[[ -z $pvcs ]]; check "removed pods' PVCs deleted (README: drained first)" $? "${pvcs:-none left}"
touch "$load_stop"
wait "$LOAD_PID"; rc=$?; LOAD_PID=
out=$(grep '^service-load' "$load_log")
check "load through the Service: linearizable, nothing lost" $rc "$(head -1 <<<"$out")"
grep -v '^service-load: ran' <<<"$out"
wait_ms=$(grep -o 'max_write_wait_ms [0-9]*' <<<"$out" | awk '{print $2}')
# Issue 12's bound. Measured here: 879-1003 ms before leaders moved off a replica before
# its move, 612-916 ms before a transfer let a lagging target catch up while still
# serving, 111 ms after both.
[[ -n $wait_ms && $wait_ms -le 1000 ]]; check "  no write waited over 1 s" $? "longest ${wait_ms:-?} ms"
rm -f "$load_log" "$load_stop"

# ------------------------------------------------ delete a node pod ---
for i in $(seq 1 50); do curl -s --max-time 5 -X PUT "$base/v1/kv/e2e/n/$i" -d "v$i" >/dev/null; done
uid_before=$(k -n "$NS" get pod demo-2 -o jsonpath='{.metadata.uid}')
pv_before=$(k -n "$NS" get pvc data-demo-2 -o jsonpath='{.spec.volumeName}' 2>/dev/null)
t=$SECONDS
out=$(k -n "$NS" delete pod demo-2 --timeout=120s 2>&1); rc=$?
check "kubectl delete pod demo-2" $rc "$out ($((SECONDS - t))s)"
# While demo-2 is down, the PodDisruptionBudget must refuse to evict another node pod (a
# drain of a Kubernetes node would otherwise take a second replica of some shard away).
pdb_zero() { [[ $(k -n "$NS" get pdb demo -o jsonpath='{.status.disruptionsAllowed}') == 0 ]]; }
until_ok 20 pdb_zero
pdb=$(k -n "$NS" get pdb demo -o jsonpath='allowed={.status.disruptionsAllowed} healthy={.status.currentHealthy}/{.status.expectedPods}')
out=$(k create --raw "/api/v1/namespaces/$NS/pods/demo-1/eviction" -f - 2>&1 <<EOF
{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "demo-1", "namespace": "$NS"}}
EOF
); rc=$?
[[ $rc != 0 && $out == *"disruption budget"* ]] && [[ -z $(k -n "$NS" get pod demo-1 -o jsonpath='{.metadata.deletionTimestamp}') ]]
check "eviction of demo-1 refused by the PDB while demo-2 is down" $? "PDB $pdb: $(tr '\n' ' ' <<<"$out" | cut -c1-160)"
back() {
  local u; u=$(k -n "$NS" get pod demo-2 -o jsonpath='{.metadata.uid}') || return 1
  [[ -n $u && $u != "$uid_before" ]] && k -n "$NS" wait --for=condition=Ready pod/demo-2 --timeout=2s
}
until_ok "$T_POD_BACK" back; rc=$?
pv_after=$(k -n "$NS" get pod demo-2 -o jsonpath='{.spec.volumes[?(@.name=="data")].persistentVolumeClaim.claimName}')
pv_after_vol=$(k -n "$NS" get pvc "$pv_after" -o jsonpath='{.spec.volumeName}' 2>/dev/null)
[[ $rc == 0 && -n $pv_before && $pv_after_vol == "$pv_before" ]]
check "demo-2 back Ready on its volume" $? "new uid, claim $pv_after -> $pv_after_vol (was $pv_before) ($((SECONDS - t))s)"
until_ok 60 test "$(k get kvc demo -o jsonpath='{.status.readyNodes}')" = 3
r=$(curl_ "$base/v1/kv/e2e/greeting")
[[ $r == 200*'"value":"hello"'* ]]; check "GET after the pod came back" $? "$r"
missing=0
for i in $(seq 1 50); do [[ $(curl -s --max-time 5 -H "Accept: application/octet-stream" "$base/v1/kv/e2e/n/$i") == "v$i" ]] || missing=$((missing + 1)); done
[[ $missing == 0 ]]; check "50 keys written before the delete all read" $? "missing $missing"
read_back() { # base-url query [curl args...]: how many of the 50 keys do not read back
  local url=$1 q=$2 i n=0; shift 2
  for i in $(seq 1 50); do [[ $(curl -s --max-time 5 -H "Accept: application/octet-stream" "$@" "$url/v1/kv/e2e/n/$i${q:+?$q}") == "v$i" ]] || n=$((n + 1)); done
  echo $n
}
# demo-2's own replicas: what it serves locally after replaying its WAL
at_pod demo-2 8080
missing=$(read_back "$pod_url" consistency=serializable "${pod_at[@]}")
[[ $missing == 0 ]]; check "demo-2 serializable reads (its replicas)" $? "$((50 - missing)) of 50 from $pod_ip"

# ------------------------------------ rolling image change, tokens on ---
# The same image under a new tag, as a user's upgrade would name a new one: the
# StatefulSet replaces the pods one at a time; each node hands its shard leaderships off
# on SIGTERM before it stops. The same patch turns bearer tokens on (spec.auth: the
# Secret below, mounted by every new pod), so the roll also mixes nodes without tokens
# and nodes with them. Under a recorded load through the Service that sends the admin
# token all along (a node without tokens ignores it): linearizable, nothing lost, and
# the answers only success or retryable ones (503, a dropped connection).
# The token file holds only the token's hash (node/src/api/auth.rs).
TOKEN=rkv_$(openssl rand -hex 32)
printf '{"tokens":[{"name":"e2e-admin","sha256":"%s","role":"admin"}]}\n' \
  "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)" >"$CURL_HOME/tokens.json"
k -n "$NS" delete secret demo-tokens --ignore-not-found >/dev/null 2>&1 # left by an E2E_KEEP run
out=$(k -n "$NS" create secret generic demo-tokens --from-file=tokens.json="$CURL_HOME/tokens.json" 2>&1); rc=$?
check "kubectl create secret generic demo-tokens" $rc "$out"
write_curlrc # curl sends the token from here on
node_image=$(bash "$HERE/images.sh" names | head -1)
new_image=${node_image%:*}:e2e-rollout
bash "$HERE/images.sh" tag "$node_image" "$new_image"
load_stop=$(mktemp -u); load_log=$(mktemp)
# (the token through the environment, not on the command line where ps shows it)
RINGKV_TOKEN=$TOKEN "$LOAD_BIN" "${load_args[@]}" --stop-file "$load_stop" >"$load_log" 2>&1 & LOAD_PID=$!
sleep 3
t=$SECONDS
k -n "$NS" patch kvc demo --type merge \
  -p "{\"spec\":{\"image\":\"$new_image\",\"auth\":{\"tokensSecret\":\"demo-tokens\"}}}" >/dev/null
gen=$(k -n "$NS" get kvc demo -o jsonpath='{.metadata.generation}')
rolled() {
  [[ $(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.spec.containers[0].image}={.status.conditions[?(@.type=="Ready")].status} {end}') == \
    "$new_image=True $new_image=True $new_image=True " ]] && settled "$gen"
}
until_ok "$T_STEP" rolled; rc=$?
check "image change rolled through the 3 pods" $rc "$(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.name}:{.spec.containers[0].image} {end}')($((SECONDS - t))s)"
sleep 3
touch "$load_stop"
wait "$LOAD_PID"; rc=$?; LOAD_PID=
out=$(grep '^service-load' "$load_log")
check "  load during the rollout: linearizable, nothing lost" $rc "$(head -1 <<<"$out")"
grep -v '^service-load: ran' <<<"$out"
rm -f "$load_log" "$load_stop"
# Every pod now wants a token: none is 401 with the scheme to use; the probes' routes
# stay open; the admin token reads.
out=$(anon -s --max-time 10 -D - -o /dev/null -w '%{http_code}' "$base/v1/kv/e2e/greeting" 2>&1)
code=${out##*$'\n'}; www=$(grep -i '^www-authenticate:' <<<"$out" | tr -d '\r')
[[ $code == 401 && $www == *Bearer* ]]; check "  tokens on: GET without a token -> 401" $? "$code, ${www:-no WWW-Authenticate header}"
r=$(anon -s --max-time 10 -w ' %{http_code}' "$base/readyz" 2>&1)
[[ $r == *' 200' ]]; check "  tokens on: /readyz without a token -> 200" $? "$r"
r=$(curl_ "$base/v1/kv/e2e/greeting")
[[ $r == 200*'"value":"hello"'* ]]; check "  tokens on: GET with the admin token" $? "$r"

# ---------------------------------------- certificate renewal under load ---
# A renewal forced through the annotation: the operator issues a new certificate (same
# CA) into the Secret demo-tls, the kubelet updates the pods' Secret volume in place, and
# the nodes serve it on new connections within a second of seeing the files change: no
# pod restarts, and a recorded load through the Service sees no failed request.
load_stop=$(mktemp -u); load_log=$(mktemp)
RINGKV_TOKEN=$TOKEN "$LOAD_BIN" "${load_args[@]}" --stop-file "$load_stop" >"$load_log" 2>&1 & LOAD_PID=$!
sleep 3
pods_now() { k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid}/{.status.containerStatuses[0].restartCount} {end}'; }
pods_before=$(pods_now)
serial_before=$(kvc_serial)
t=$SECONDS
out=$(k -n "$NS" annotate kvc demo ringkv.io/renew-certificate="$(date +%s)" --overwrite 2>&1)
info "$out; serial was ${serial_before:-none}"
renewed() { # status.tls.serial changed, and every pod serves it on both ports
  local want p; want=$(kvc_serial)
  [[ -n $want && $want != "$serial_before" ]] || return 1
  for p in $(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o jsonpath='{.items[*].status.podIP}'); do
    [[ $(served_serial "$p" 8080) == "$want" && $(served_serial "$p" 8180) == "$want" ]] || return 1
  done
}
until_ok "$T_RENEW" renewed; rc=$?
took=$((SECONDS - t))
served=$(for p in $(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP} {end}'); do
  printf '%s:%s/%s ' "${p%%=*}" "$(served_serial "${p#*=}" 8080)" "$(served_serial "${p#*=}" 8180)"; done)
check "renewal: every pod serves the new certificate on 8080 and 8180" $rc "status.tls.serial ${serial_before:-none} -> $(kvc_serial) after ${took}s (bound ${T_RENEW}s); served (8080/8180): $served"
# the same CA: the bundle fetched before the renewal verifies what the pods serve now
at_pod demo-1 8080
out=$(timeout 10 openssl s_client -connect "$pod_ip:8080" -servername "$SVC" -CAfile "$CA" -verify_hostname "$SVC" \
  -verify_return_error </dev/null 2>&1 | grep -m1 'Verify return code')
[[ $out == *'0 (ok)'* ]]; check "  the renewed certificate verifies against the CA bundle from before" $? "${out:-no handshake}"
sleep 3
touch "$load_stop"
wait "$LOAD_PID"; rc=$?; LOAD_PID=
out=$(grep '^service-load' "$load_log")
[[ $rc == 0 && $out == *'unknown 0,'*'failed 0 lost 0'* ]]
check "  load during the renewal: linearizable, no failed request" $? "rc $rc: $(head -1 <<<"$out")"
grep -v '^service-load: ran' <<<"$out"
rm -f "$load_log" "$load_stop"
pods_after=$(pods_now)
[[ -n $pods_before && $pods_after == "$pods_before" ]]
check "  no pod restarted or replaced (uid/restartCount)" $? "before: $pods_before; after: $pods_after"

# ------------------------------------------------------------ Prometheus ---
# Prometheus outside the cluster, as a user's own would be, finding the targets through
# the API server (kubernetes_sd, EndpointSlices): the nodes behind the client Service
# demo (port http) and the operator behind ringkv-metrics (port metrics). Built by
# cluster.sh from its Go module (tests/k8s/prometheus/go.mod says why not Debian's).
# The nodes are scraped over HTTPS as the operator's ServiceMonitor says: the cluster's
# CA, and the client Service's name (the targets are pod IPs, which the certificate does
# not name). /metrics needs no token (spec.auth.metricsAuth is false).
PROM_PORT=${E2E_PROM_PORT:-19090}
if ! command -v prometheus >/dev/null 2>&1; then
  fail "Prometheus scrape" "no prometheus binary on PATH (cluster.sh up builds it; eval \"\$(cluster.sh env)\")"
else
  prom_dir=$(mktemp -d)
  cat >"$prom_dir/prometheus.yml" <<EOF
global: {scrape_interval: 2s, scrape_timeout: 2s}
scrape_configs:
  - job_name: ringkv-nodes
    scheme: https
    tls_config: {ca_file: $CA, server_name: $SVC}
    kubernetes_sd_configs:
      - {role: endpointslice, kubeconfig_file: $KUBECONFIG, namespaces: {names: [$NS]}}
    relabel_configs:
      - {source_labels: [__meta_kubernetes_service_name, __meta_kubernetes_endpointslice_port_name], regex: demo;http, action: keep}
      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
  - job_name: ringkv-operator
    kubernetes_sd_configs:
      - {role: endpointslice, kubeconfig_file: $KUBECONFIG, namespaces: {names: [$OP_NS]}}
    relabel_configs:
      - {source_labels: [__meta_kubernetes_service_name, __meta_kubernetes_endpointslice_port_name], regex: ringkv-metrics;metrics, action: keep}
      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
EOF
  prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$prom_dir/log" 2>&1 & PROM_PID=$!
  promq() { curl -q -s --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(" ".join(sorted(m["metric"].get("pod","?")+"="+m["value"][1] for m in r)))' 2>/dev/null; }
  all_up() { [[ $(promq 'up{job="ringkv-nodes"} == 1' | wc -w) == 3 && $(promq 'up{job="ringkv-operator"} == 1' | wc -w) == 2 ]]; }
  t=$SECONDS
  until_ok 90 all_up; rc=$?
  check "Prometheus: up == 1 for 3 nodes and 2 operator pods" $rc "nodes: $(promq 'up{job="ringkv-nodes"}'); operator: $(promq 'up{job="ringkv-operator"}') ($((SECONDS - t))s)"
  ((rc)) && tail -5 "$prom_dir/log"
  series() { [[ $(promq "count by (pod) ({job=\"$1\", __name__=~\"$2\"})" | wc -w) == "$3" ]]; }
  until_ok 30 series ringkv-nodes 'ringkv_raft_.+' 3; rc=$?
  check "  ringkv_* series of every node" $rc "$(promq 'count by (pod) ({job="ringkv-nodes", __name__=~"ringkv_.+"})')"
  until_ok 30 series ringkv-operator 'ringkv_operator_.+' 2; rc=$?
  check "  ringkv_operator_* series of both operator pods" $rc "$(promq 'count by (pod) ({job="ringkv-operator", __name__=~"ringkv_operator_.+"})')"
  leaders=$(promq 'sum(ringkv_operator_leader)')
  [[ $leaders == *"=1" ]]; check "  exactly one operator leads (sum of ringkv_operator_leader)" $? "${leaders#*=}"
  kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null; PROM_PID=
  rm -rf "$prom_dir"
fi

# ------------------------------------- operator under its own RBAC ---
oplogs=$(for p in $(k -n "$OP_NS" get pods -l app.kubernetes.io/name=ringkv-operator -o name); do k -n "$OP_NS" logs "$p"; done 2>&1)
forb=$(grep -ciE 'forbidden|cannot (get|list|watch|create|patch|update|delete)' <<<"$oplogs")
[[ $forb == 0 ]]; check "no forbidden call in the operator's logs" $? "$forb matching lines of $(wc -l <<<"$oplogs")$( ((forb)) && grep -m3 -iE 'forbidden|cannot' <<<"$oplogs")"
errs=$(grep -c '"level":"ERROR"' <<<"$oplogs")
info "operator ERROR lines: $errs$( ((errs)) && grep -m3 '"level":"ERROR"' <<<"$oplogs")"

# -------------------------------------------------------- delete kvc ---
uid=$(k get kvc demo -o jsonpath='{.metadata.uid}')
owned() { # objects in $NS whose ownerReferences name the kvc's uid
  k -n "$NS" get statefulsets,services,poddisruptionbudgets,networkpolicies,configmaps,secrets,pods -o json 2>/dev/null |
    python3 -c "
import json,sys
for o in json.load(sys.stdin)['items']:
    if any(r.get('uid')=='$uid' for r in o['metadata'].get('ownerReferences',[])):
        print(o['kind']+'/'+o['metadata']['name'])"
}
before=$(owned | tr '\n' ' ')
info "owned by kvc/demo: $before"
t=$SECONDS
out=$(k delete kvc demo --timeout=${T_DELETE}s 2>&1); rc=$?
check "kubectl delete kvc demo" $rc "$out ($((SECONDS - t))s)"
gone() { [[ -z $(owned) ]] && [[ -z $(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o name 2>/dev/null) ]]; }
until_ok "$T_DELETE" gone; rc=$?
check "owned objects gone" $rc "left: $(owned | tr '\n' ' ')$(k -n "$NS" get pods -l app.kubernetes.io/instance=demo -o name 2>/dev/null | tr '\n' ' ') ($((SECONDS - t))s)"
pvcs=$(k -n "$NS" get pvc -o name 2>/dev/null | grep demo | tr '\n' ' ')
[[ $(wc -w <<<"$pvcs") == 3 ]]; check "PVCs kept (pvcRetention Retain, the default)" $? "$pvcs"

# ------------------------------- re-create over the kept volumes, then Delete ---
# The PVCs kept above hold the data (a ring bootstrapped with 4 shards): the KVCluster
# applied again, now asking for 8 shards, starts on them, serves what was written before
# the delete and splits the volumes' 4 shards into 8. Then a 4th node, on a fresh volume
# (its pod template says 8 shards), joins that ring. Then `pvcRetention: Delete`.
t=$SECONDS
out=$(sed 's/^  shards: 4$/  shards: 8/' deploy/samples/small.yaml | k apply -f - 2>&1) &&
  out=$(k wait --for=condition=Ready kvc/demo --timeout=$T_READY 2>&1); rc=$?
check "kvc/demo re-created over the kept volumes (shards 8), Ready" $rc "$out ($((SECONDS - t))s)"
# A new KVCluster, so a new CA (the old one's Secrets went with it) and a new ClusterIP;
# and no spec.auth in small.yaml: no tokens.
k -n "$NS" get cm demo-ca-bundle -o jsonpath='{.data.ca\.crt}' >"$CA"
ip=$(k -n "$NS" get svc demo -o jsonpath='{.spec.clusterIP}')
TOKEN=
write_curlrc
ca_now=$(openssl x509 -in "$CA" -noout -fingerprint -sha256 2>&1)
info "client Service demo: $base at $ip, $([[ $ca_now != "$ca_first" ]] && echo "a new CA" || echo "the same CA"): ${ca_now#*=}"
until_ok 30 curl -sf --max-time 3 "$base/healthz"
missing=$(read_back "$base" "")
r=$(curl_ "$base/v1/kv/e2e/greeting")
[[ $missing == 0 && $r == 200*'"value":"hello"'* ]]
check "  the data written before the delete reads back" $? "missing $missing of 50; greeting: ${r:0:60}"
step_to 8 3
step_to 8 4
at_pod demo-4 8080
missing=$(read_back "$pod_url" consistency=serializable "${pod_at[@]}")
[[ $missing == 0 ]]; check "  demo-4 (fresh volume) serves every key" $? "missing $missing of 50 (serializable reads at demo-4)"
k -n "$NS" patch kvc demo --type merge -p '{"spec":{"pvcRetention":"Delete"}}' >/dev/null
t=$SECONDS
out=$(k delete kvc demo --timeout=${T_DELETE}s 2>&1); rc=$?
no_pvcs() { [[ -z $(k -n "$NS" get pvc -o name 2>/dev/null | grep data-demo-) ]]; }
until_ok "$T_DELETE" no_pvcs && [[ $rc == 0 ]]
check "kubectl delete kvc demo with pvcRetention Delete: PVCs gone" $? "$out; left: $(k -n "$NS" get pvc -o name 2>/dev/null | grep data-demo- | tr '\n' ' ') ($((SECONDS - t))s)"

# -------------------------------------------- TLS Provided (cert-manager's way) ---
# A one-node cluster whose certificates the user keeps (spec.tls Provided), made here with
# openssl as cert-manager would: a CA, the nodes' kubernetes.io/tls Secret named
# `prov-tls` (the name the operator would give its own: it must not take it over) and the
# operator's client certificate. The nodes serve that certificate, the operator reaches
# them with its own (Ready means it read the ring on the internal port), and it makes no
# CA of its own and leaves the Secret as it was.
p=$CURL_HOME/prov; mkdir -p "$p"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=e2e-user-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$p/ca.key" -out "$p/ca.crt" >/dev/null 2>&1
leaf() { # name eku sans
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" -keyout "$p/$1.key" -out "$p/$1.csr" >/dev/null 2>&1 &&
    openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 2 -out "$p/$1.crt" \
      -extfile <(printf 'extendedKeyUsage=%s\nsubjectAltName=%s\n' "$2" "$3") >/dev/null 2>&1
}
leaf prov-node serverAuth,clientAuth "DNS:*.prov-peers.$NS.svc,DNS:prov.$NS.svc" &&
  leaf prov-operator clientAuth "DNS:ringkv-operator" &&
  k -n "$NS" create secret generic prov-tls --type=kubernetes.io/tls --from-file=tls.crt="$p/prov-node.crt" \
    --from-file=tls.key="$p/prov-node.key" --from-file=ca.crt="$p/ca.crt" >/dev/null &&
  k -n "$NS" create secret generic prov-operator --from-file=tls.crt="$p/prov-operator.crt" \
    --from-file=tls.key="$p/prov-operator.key" --from-file=ca.crt="$p/ca.crt" >/dev/null
check "Provided: the user's CA and Secrets made (openssl)" $? "$(openssl x509 -in "$p/prov-node.crt" -noout -serial 2>&1)"
secret_sum() { k -n "$NS" get secret prov-tls -o jsonpath='{.data}' | sha256sum | cut -c1-16; }
sum_before=$(secret_sum)
t=$SECONDS
out=$(k -n "$NS" apply -f - 2>&1 <<YAML
apiVersion: ringkv.io/v1alpha1
kind: KVCluster
metadata: {name: prov}
spec:
  shards: 1
  replicationFactor: 1
  nodes: 1
  storage: {size: 1Gi}
  pvcRetention: Delete
  tls: {mode: Provided, secretName: prov-tls, operatorSecretName: prov-operator}
YAML
) && out=$(k -n "$NS" wait --for=condition=Ready kvc/prov --timeout=$T_READY 2>&1); rc=$?
check "Provided: kvc/prov Ready (the operator reached it with its own certificate)" $rc "$out ($((SECONDS - t))s)"
prov_ip=$(k -n "$NS" get pod prov-1 -o jsonpath='{.status.podIP}')
pc() { curl -q -sS --max-time 5 --cacert "$p/ca.crt" --connect-to "prov-1.prov-peers.$NS.svc:8080:$prov_ip:8080" "$@"; }
r=$(pc -X PUT "https://prov-1.prov-peers.$NS.svc:8080/v1/kv/p" -d provided 2>&1) &&
  r=$(pc -H 'Accept: application/octet-stream' "https://prov-1.prov-peers.$NS.svc:8080/v1/kv/p" 2>&1)
[[ $r == provided ]]; check "Provided: PUT and GET over https trusting only the user's CA" $? "$r"
want=$(openssl x509 -in "$p/prov-node.crt" -noout -serial | norm_serial)
mode_serial() { echo "$(k -n "$NS" get kvc prov -o jsonpath='{.status.tls.mode}') $(k -n "$NS" get kvc prov -o jsonpath='{.status.tls.serial}' | norm_serial)"; }
until_ok 30 test "$(mode_serial)" = "Provided $want"
served=$(served_serial "$prov_ip" 8180)
[[ $(mode_serial) == "Provided $want" && $served == "$want" ]]
check "Provided: status.tls and the internal port show the user's certificate" $? "status: $(mode_serial); served on 8180: $served; want $want"
[[ -z $(k -n "$NS" get secret prov-ca -o name 2>/dev/null) && $(secret_sum) == "$sum_before" ]]
check "Provided: no CA made, the user's Secret untouched" $? "prov-ca: $(k -n "$NS" get secret prov-ca -o name 2>&1 | head -1); prov-tls data $sum_before -> $(secret_sum)"
out=$(k -n "$NS" delete kvc prov --timeout=${T_DELETE}s 2>&1); rc=$?
k -n "$NS" delete secret prov-tls prov-operator --ignore-not-found >/dev/null 2>&1
check "Provided: kubectl delete kvc prov" $rc "$out"
