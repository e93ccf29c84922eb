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
3. Checks a few promises: no wildcard RBAC, integers rendered as integers, the values
   schema refusing a typo, and a KVCluster with fewer nodes than its replication factor
   failing to render.

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
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "storage": {"size": "20Gi", "storageClassName": "fast"},
        "limits": {"maxKeyBytes": 8192, "maxValueBytes": 4194304},
        "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
        "pvcRetention": "Delete",
    },
}
NAMESPACED_ONLY = {"watchNamespace": "apps", "leaderElection": {"enabled": False}}
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

    chart = helm.Chart.load(str(CHART))
    for crd in chart.crds:
        for obj in load_docs(crd["data"]):
            validate(obj, f"chart {crd['name']}")
    for path in ["deploy/operator.yaml", "deploy/crds/kvcluster.yaml"]:
        for obj in load_docs((ROOT / path).read_text()):
            validate(obj, path)
        if path == "deploy/operator.yaml":
            check_rbac([(path, o) for o in load_docs((ROOT / path).read_text())], path)
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
    too_few = copy.deepcopy(ALL_FEATURES)
    too_few["cluster"]["nodes"] = 1
    must_fail_render(too_few, "must be at least", "a KVCluster with nodes < replicationFactor does not render")

    print(f"chart: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
