#!/usr/bin/env bash
# Validates the Kubernetes manifests offline: renders deploy/kubernetes and deploy/kubernetes/examples
# with `kubectl kustomize` (or, without kubectl, concatenates the files each kustomization.yaml lists, in
# order) and checks every rendered document:
#   - built-in kinds (and the CustomResourceDefinitions themselves) against the Kubernetes JSON schemas
#     of `kubernetes-validate` (PyPI), strict (unknown fields are errors), for each version in
#     $KUBE_VERSIONS (default: 1.30.0 and 1.37.0);
#   - instances of Gantry's own kinds (GPUWorkload, GPUQueue, GPUNode) against the openAPIV3Schema of
#     the rendered CRDs, strict the way `kubectl apply` (field validation Strict) is;
#   - kinds neither knows (ServiceMonitor, PrometheusRule of the Prometheus Operator) are skipped, by
#     name, and counted in the summary.
# Exits non-zero on any invalid document; prints one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=deploy/kubernetes
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.30.0 1.37.0"}
# KUBECTL= (empty) forces the fallback renderer.
KUBECTL=${KUBECTL-kubectl}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    python3 -m pip install --quiet kubernetes-validate >&2
fi

# Files a kustomization lists under `resources:`, in order, directories followed into their own
# kustomization (the fallback when kubectl is absent; our files spell namespaces and images out in full).
list_resources() {
    local dir=$1
    sed -n '/^resources:/,/^[^ #-]/p' "$dir/kustomization.yaml" \
        | sed -n 's/^  - \([^ #]*\).*/\1/p' \
        | while read -r entry; do
            if [ -d "$dir/$entry" ]; then
                list_resources "$dir/$entry"
            else
                echo "$dir/$entry"
            fi
        done
}

render() {
    local dir=$1 out=$2
    if [ -n "$KUBECTL" ] && command -v "$KUBECTL" >/dev/null 2>&1; then
        "$KUBECTL" kustomize "$dir" >"$out"
    else
        : >"$out"
        while read -r file; do
            printf -- '---\n' >>"$out"
            cat "$file" >>"$out"
            printf '\n' >>"$out"
        done < <(list_resources "$dir")
    fi
}

render "$DIR" "$WORK/base.yaml"
render "$DIR/examples" "$WORK/examples.yaml"
if [ -n "$KUBECTL" ] && command -v "$KUBECTL" >/dev/null 2>&1; then
    renderer="kubectl kustomize"
else
    renderer="file concatenation (no kubectl)"
fi

python3 - "$renderer" "$KUBE_VERSIONS" "$WORK/base.yaml" "$WORK/examples.yaml" <<'PY'
import copy
import sys

import jsonschema
import kubernetes_validate
import yaml

renderer, versions, paths = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
# Kinds whose schemas neither kubernetes-validate nor our CRDs provide.
SKIP = {"ServiceMonitor", "PrometheusRule"}

docs = []
for path in paths:
    with open(path) as f:
        for i, d in enumerate(yaml.safe_load_all(f)):
            if d is not None:
                docs.append((path.rsplit("/", 1)[-1], i, d))


def closed(schema):
    """Unknown fields become errors, as with kubectl's Strict field validation (the API server would
    reject or prune them): objects listing properties, without preserve-unknown-fields or
    additionalProperties, get additionalProperties: false."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


# Schemas of custom kinds from the rendered CRDs: (group/version, kind) -> schema.
crd_schemas = {}
for _, _, d in docs:
    if d.get("kind") == "CustomResourceDefinition":
        spec = d.get("spec", {})
        for v in spec.get("versions", []):
            schema = v.get("schema", {}).get("openAPIV3Schema")
            if schema:
                key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                crd_schemas[key] = closed(schema)

failures, counts = [], {"builtin": 0, "custom": 0, "skipped": 0}
for source, i, d in docs:
    kind, api = d.get("kind", "?"), d.get("apiVersion", "?")
    name = f"{source}#{i} {kind}/{d.get('metadata', {}).get('name', '?')}"
    if kind in SKIP:
        counts["skipped"] += 1
        continue
    if (api, kind) in crd_schemas:
        # apiVersion, kind and metadata are the API server's to check; spec and status the CRD's.
        body = {k: v for k, v in d.items() if k not in ("apiVersion", "kind", "metadata")}
        schema = crd_schemas[(api, kind)]
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
        for e in errors:
            path = ".".join(str(p) for p in e.absolute_path)
            failures.append(f"{name}: {path}: {e.message}")
        counts["custom"] += 1
        continue
    for version in versions:
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{name}: no schema for {api} {kind} in Kubernetes {version} (add it to SKIP?)")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            failures.append(f"{name}: Kubernetes {version}: {path}: {e.message}")
    counts["builtin"] += 1

for f in failures:
    print(f"INVALID {f}", file=sys.stderr)
print(
    f"validate-manifests: {len(docs)} documents rendered by {renderer}: "
    f"{counts['builtin']} built-in checked against Kubernetes {', '.join(versions)}, "
    f"{counts['custom']} custom resources against their CRDs, "
    f"{counts['skipped']} skipped ({', '.join(sorted(SKIP))}); "
    f"{'FAILED: ' + str(len(failures)) + ' problem(s)' if failures else 'all valid'}"
)
sys.exit(1 if failures else 0)
PY
