#!/usr/bin/env python3
"""Checks the ringkv Helm chart and the plain manifests under deploy/.

1. `helm lint --strict` (helm-python-sdk) against Kubernetes 1.29 and the newest version
   kubernetes-validate bundles, with default values and with every feature on.
2. Renders the chart with both value sets and validates every object strictly
   (unknown fields are errors) with kubernetes-validate against both versions; the
   CRD under crds/ and deploy/operator.yaml too. KVCluster objects are validated
   against the CRD's own openAPIV3Schema (its CEL rules are evaluated by the Rust
   tests); ServiceMonitors, whose schema ships with prometheus-operator, only by shape.
   Objects the operator builds (StatefulSet, Services, PodDisruptionBudget) arrive as
   JSON files named on the command line and are validated the same way.
3. Checks a few promises: no wildcard RBAC yet a grant for every call the operator
   makes, integers rendered as integers, the values schema refusing a typo, a KVCluster
   with fewer nodes than its replication factor and two replicas without a Lease
   failing to render, and watchNamespace placing the KVCluster where it is watched.

Exit status: 0 all passed, 1 a check failed, 3 a required PyPI package is missing
(the Rust test that runs this script reports that as a skip, except under CI).
"""

import copy
import json
import pathlib
import sys

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import yaml
    from kubernetes_validate import utils as kv_utils
except ImportError as missing:
    print(f"missing PyPI package {missing.name!r}: python3 -m pip install helm-python-sdk kubernetes-validate")
    sys.exit(3)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "ringkv"
RELEASE, NAMESPACE = "ringkv", "ringkv-system"
VERSIONS = ["1.29.0", kv_utils.latest_version()]

ALL_FEATURES = {
    "watchNamespace": "",
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "networkPolicy": {"enabled": True},
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ringkv", "effect": "NoSchedule"}],
    "podAnnotations": {"example.com/team": "storage"},
    "cluster": {
        "enabled": True,
        "name": "kv",
        "shards": 16,
        "replicationFactor": 3,
        "nodes": 5,
        "imagePullPolicy": "Always",
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "nodeSelector": {"example.com/pool": "storage"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ringkv", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "kv"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}},
        "storage": {"size": "20Gi", "storageClassName": "fast"},
        "limits": {"maxKeyBytes": 8192, "maxValueBytes": 4194304},
        "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
        "pvcRetention": "Delete",
    },
}
# One namespace, one replica without a Lease: the KVCluster goes to the watched
# namespace, RBAC becomes a Role there.
NAMESPACED_ONLY = {
    "watchNamespace": "apps",
    "replicaCount": 1,
    "leaderElection": {"enabled": False},
    "networkPolicy": {"enabled": True},
    "cluster": {"enabled": True},
}

# Every call the operator makes (operator/src: controller, reconcile, execute, events;
# kube-lease-manager for the Lease): (apiGroup, resource, verb). The role must grant each.
OPERATOR_CALLS = [
    ("ringkv.io", "kvclusters", v) for v in ("list", "watch", "patch")
] + [
    ("ringkv.io", "kvclusters/status", "patch"),
    ("ringkv.io", "kvclusters/finalizers", "update"),
] + [("apps", "statefulsets", v) for v in ("get", "list", "watch", "create", "patch")] + [
    (g, r, v) for g, r in (("", "services"), ("policy", "poddisruptionbudgets"), ("networking.k8s.io", "networkpolicies")) for v in ("create", "patch")
] + [("monitoring.coreos.com", "servicemonitors", v) for v in ("create", "patch", "delete")] + [
    ("", "persistentvolumeclaims", "deletecollection"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
]
LEASE_CALLS = [("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch")]
VALUE_SETS = {"default values": {}, "all features": ALL_FEATURES, "one namespace": NAMESPACED_ONLY}

passed, failed = 0, 0


def result(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed += 1
        print(f"FAIL  {what}: {detail}")


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def structural(schema):
    """An openAPIV3Schema as a JSON Schema as strict as the API server: unknown fields
    are errors unless preserved, nullable allows null, int-or-string allows both."""
    s = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    if "properties" in s:
        s["properties"] = {k: structural(v) for k, v in s["properties"].items()}
        if "additionalProperties" not in s and not schema.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = structural(s["additionalProperties"])
    if "items" in s:
        s["items"] = structural(s["items"])
    if schema.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    return s


def kvcluster_validator():
    crd = load_docs((ROOT / "deploy" / "crds" / "kvcluster.yaml").read_text())[0]
    schema = structural(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    for key in ("apiVersion", "kind"):
        schema["properties"][key] = {"type": "string"}
    schema["properties"]["metadata"] = {"type": "object"}
    # A YAML float is never an integer here, even when integral (the operator reads u32).
    checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    )
    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)
    return cls(schema)


KVC = kvcluster_validator()


def validate(obj, source):
    name = f"{source}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj.get("kind") == "KVCluster":
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in KVC.iter_errors(obj)]
        result(not errors, f"{name} against the KVCluster CRD schema", "; ".join(errors))
        return
    if obj.get("apiVersion", "").startswith("monitoring.coreos.com/"):
        ok = obj.get("kind") == "ServiceMonitor" and obj["spec"]["endpoints"] and obj["spec"]["selector"]
        result(bool(ok), f"{name} (shape only: its schema ships with prometheus-operator)")
        return
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            result(True, f"{name} against Kubernetes {version} (strict)")
        except kv_utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            result(False, f"{name} against Kubernetes {version}", f"{path}: {e.message}")
        except kv_utils.SchemaNotFoundError as e:
            result(False, f"{name} against Kubernetes {version}", e.message)


def lint(values, label):
    for version in VERSIONS:
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{version}")
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [
            {"error": e} for e in report.get("errors", [])
        ]
        detail = "; ".join(f"{m.get('path', '')}: {m['error']}" for m in problems)
        result(not problems, f"helm lint --strict ({label}, Kubernetes {version})", detail)


def render(values):
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        objects += [(path, d) for d in load_docs(text)]
    return objects


def check_rbac(objects, label):
    wildcard = [
        f"{o['kind']}/{o['metadata']['name']}"
        for _, o in objects
        if o["kind"] in ("ClusterRole", "Role")
        for rule in o.get("rules", [])
        if "*" in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", [])
    ]
    result(not wildcard, f"no wildcard RBAC ({label})", ", ".join(wildcard))


def check_rbac_covers(objects, label, leases):
    """Each call the operator makes is granted by some rule of the chart's roles."""
    rules = [r for _, o in objects if o["kind"] in ("ClusterRole", "Role") for r in o.get("rules", [])]

    def granted(group, resource, verb):
        return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)

    wanted = OPERATOR_CALLS + (LEASE_CALLS if leases else [])
    missing = [f"{g or 'core'}/{r} {v}" for g, r, v in wanted if not granted(g, r, v)]
    result(not missing, f"RBAC grants every call the operator makes ({label})", ", ".join(missing))


def must_fail_render(values, expect, what):
    try:
        helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE)
        result(False, what, "rendered without error")
    except helm.HelmError as e:
        result(expect in str(e), what, f"error lacks {expect!r}: {e}")


def main():
    for label, values in VALUE_SETS.items():
        lint(values, label)
        objects = render(values)
        kinds = sorted({o["kind"] for _, o in objects})
        print(f"      rendered {len(objects)} objects with {label}: {', '.join(kinds)}")
        for path, obj in objects:
            validate(obj, f"{label} {path}")
        check_rbac(objects, label)
        check_rbac_covers(objects, label, leases=values.get("leaderElection", {}).get("enabled", True))

    chart = helm.Chart.load(str(CHART))
    for crd in chart.crds:
        for obj in load_docs(crd["data"]):
            validate(obj, f"chart {crd['name']}")
    for path in ["deploy/operator.yaml", "deploy/crds/kvcluster.yaml"]:
        for obj in load_docs((ROOT / path).read_text()):
            validate(obj, path)
        if path == "deploy/operator.yaml":
            docs = [(path, o) for o in load_docs((ROOT / path).read_text())]
            check_rbac(docs, path)
            check_rbac_covers(docs, path, leases=True)
    for sample in sorted((ROOT / "deploy" / "samples").glob("*.yaml")):
        obj = load_docs(sample.read_text())[0]
        if sample.name != "invalid.yaml":
            validate(obj, f"deploy/samples/{sample.name}")

    # Objects the operator builds, handed over by the Rust test as JSON files.
    for extra in sys.argv[1:]:
        for obj in json.loads(pathlib.Path(extra).read_text()):
            validate(obj, "operator-built")

    typo = copy.deepcopy(ALL_FEATURES)
    typo["cluster"]["shard"] = 4
    try:
        chart.validate_schema(typo)
        result(False, "values.schema.json refuses an unknown key", "accepted cluster.shard")
    except helm.HelmError:
        result(True, "values.schema.json refuses an unknown key")
    one_ns = render(NAMESPACED_ONLY)
    placed = {f"{o['kind']}/{o['metadata']['name']}": o["metadata"].get("namespace") for _, o in one_ns}
    want = {"KVCluster/ringkv": "apps", "Role/ringkv": "apps"}
    wrong = {k: placed.get(k) for k, ns in want.items() if placed.get(k) != ns}
    result(not wrong, "with watchNamespace the KVCluster and Role are in it", str(wrong))
    kept = [o for _, o in one_ns if o["kind"] == "KVCluster" and o["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"]
    result(len(kept) == 1, "helm uninstall keeps the KVCluster (its finalizer needs the operator)")
    notes = helm.Chart.load(str(CHART)).render(NAMESPACED_ONLY, name=RELEASE, namespace=NAMESPACE, is_install=True)
    notes = next((t for p, t in notes.items() if p.endswith("NOTES.txt")), "")
    result("kubectl -n apps wait --for=condition=Ready kvc/ringkv" in notes, "NOTES.txt tells how to wait for the cluster", notes)
    defaults = {f"{o['kind']}/{o['metadata']['name']}": o for _, o in render({})}
    # The nodes' NetworkPolicy is the operator's (one per KVCluster, any namespace): the
    # chart tells it the operator pods' labels, which must select the operator's pods.
    operator = defaults.get("Deployment/ringkv", {}).get("spec", {}).get("template", {})
    env = {e["name"]: e.get("value") for e in operator.get("spec", {}).get("containers", [{}])[0].get("env", [])}
    pod_labels = operator.get("metadata", {}).get("labels", {})
    wanted = dict(p.split("=", 1) for p in (env.get("RINGKV_OPERATOR_NETWORK_POLICY_FROM") or "").split(",") if "=" in p)
    result(
        bool(wanted) and all(pod_labels.get(k) == v for k, v in wanted.items()),
        "by default the operator gives each cluster a NetworkPolicy letting in the operator's pods",
        f"{env.get('RINGKV_OPERATOR_NETWORK_POLICY_FROM')!r} vs pod labels {pod_labels}",
    )
    no_policy = {f"{o['kind']}/{o['metadata']['name']}": o for _, o in render({"networkPolicy": {"enabled": False}})}
    no_env = [e["name"] for e in no_policy["Deployment/ringkv"]["spec"]["template"]["spec"]["containers"][0].get("env", [])]
    result(
        "RINGKV_OPERATOR_NETWORK_POLICY_FROM" not in no_env and not any(k.startswith("NetworkPolicy/") for k in no_policy),
        "networkPolicy.enabled=false: no NetworkPolicies, none asked of the operator",
    )
    spread = defaults.get("Deployment/ringkv", {}).get("spec", {}).get("template", {}).get("spec", {}).get("affinity", {})
    result("podAntiAffinity" in spread, "by default the operator's replicas prefer different hosts", str(spread))
    must_fail_render(
        {"leaderElection": {"enabled": False}}, "needs leaderElection.enabled", "two replicas without a Lease do not render"
    )
    too_few = copy.deepcopy(ALL_FEATURES)
    too_few["cluster"]["nodes"] = 1
    must_fail_render(too_few, "must be at least", "a KVCluster with nodes < replicationFactor does not render")

    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
