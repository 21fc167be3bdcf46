#!/usr/bin/env bash
# Validates the observability stack under deploy/ offline (no Docker engine, no network but the
# package registries):
#   - deploy/compose/compose.yaml against the Compose Specification's JSON schema, the copy that
#     PyPI's check-jsonschema ships (builtin schema `vendor.compose-spec`), with Python's jsonschema;
#     plus every bind-mounted path exists and every named volume is declared;
#   - deploy/prometheus/prometheus.yml and rules/*.yml with `promtool check config` and
#     `promtool check rules` (Debian's `prometheus` package, installed here if missing), and the
#     alert rules' unit tests in deploy/prometheus/tests/ with `promtool test rules`;
#   - every Grafana file: deploy/grafana/dashboards/*.json parsed as JSON (unique panel ids, every
#     query with a Prometheus datasource), provisioning YAML parsed.
# The metric names in the dashboard's queries and the rules' expressions are checked against what
# gantry exports by `cargo test -p gantry-server --test observability` (run with the workspace tests).
# Idempotent; prints one summary line; exits non-zero on any problem.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! python3 -c 'import check_jsonschema, jsonschema, yaml' 2>/dev/null; then
    python3 -m pip install --quiet 'check-jsonschema==0.39.0' pyyaml >&2
fi

python3 - <<'PY'
import json
import os
import sys

import jsonschema
import yaml

failures = []
compose_dir = "deploy/compose"
import check_jsonschema

schema_path = os.path.join(
    os.path.dirname(check_jsonschema.__file__), "builtin_schemas", "vendor", "compose-spec.json"
)
with open(schema_path) as f:
    schema = json.load(f)
with open(os.path.join(compose_dir, "compose.yaml")) as f:
    compose = yaml.safe_load(f)
validator = jsonschema.validators.validator_for(schema)(schema)
for e in sorted(validator.iter_errors(compose), key=str):
    failures.append(f"compose.yaml: {e.json_path}: {e.message}")
# The schema cannot see the file system or cross references: bind mounts exist, volumes are declared.
declared = set((compose.get("volumes") or {}).keys())
services = compose.get("services") or {}
for name, svc in services.items():
    for v in svc.get("volumes", []):
        source = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
        if source.startswith((".", "/")):
            path = os.path.normpath(os.path.join(compose_dir, source))
            if not os.path.exists(path):
                failures.append(f"compose.yaml: services.{name}.volumes: {source} does not exist ({path})")
        elif source and source not in declared:
            failures.append(f"compose.yaml: services.{name}.volumes: volume {source} is not declared")
    dockerfile = (svc.get("build") or {}).get("dockerfile") if isinstance(svc.get("build"), dict) else None
    if dockerfile:
        context = os.path.join(compose_dir, svc["build"].get("context", "."))
        if not os.path.exists(os.path.join(context, dockerfile)):
            failures.append(f"compose.yaml: services.{name}.build: {dockerfile} not found in {context}")
profiles = sorted({p for s in services.values() for p in s.get("profiles", [])})

dashboards = 0
panels_total = 0
for root, _, files in os.walk("deploy/grafana"):
    for file in sorted(files):
        path = os.path.join(root, file)
        if file.endswith(".json"):
            try:
                with open(path) as f:
                    d = json.load(f)
            except ValueError as e:
                failures.append(f"{path}: not JSON: {e}")
                continue
            dashboards += 1
            ids = []

            def walk(ps):
                global panels_total
                for p in ps or []:
                    panels_total += 1
                    ids.append(p.get("id"))
                    for t in p.get("targets", []):
                        ds = (t.get("datasource") or p.get("datasource") or {}).get("type")
                        if ds != "prometheus":
                            failures.append(f"{path}: panel {p.get('title')!r}: target without a Prometheus datasource")
                        if not str(t.get("expr", "")).strip():
                            failures.append(f"{path}: panel {p.get('title')!r}: empty expr")
                    walk(p.get("panels"))

            walk(d.get("panels"))
            if len(ids) != len(set(ids)):
                failures.append(f"{path}: panel ids are not unique")
            for key in ("uid", "title", "panels"):
                if key not in d:
                    failures.append(f"{path}: no {key}")
        elif file.endswith((".yaml", ".yml")):
            with open(path) as f:
                doc = yaml.safe_load(f)
            if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
                failures.append(f"{path}: not a Grafana provisioning file (apiVersion: 1)")

for f in failures:
    print(f"INVALID {f}", file=sys.stderr)
print(
    f"validate-observability: compose.yaml against the Compose Specification schema "
    f"({len(services)} services, profiles: {', '.join(profiles) or 'none'}); "
    f"{dashboards} Grafana dashboard(s), {panels_total} panels; "
    f"{'FAILED: ' + str(len(failures)) + ' problem(s)' if failures else 'valid'}"
)
sys.exit(1 if failures else 0)
PY

promtool check config deploy/prometheus/prometheus.yml >/dev/null
promtool check rules deploy/prometheus/rules/*.yml >/dev/null
if compgen -G 'deploy/prometheus/tests/*.yml' >/dev/null; then
    (cd deploy/prometheus/tests && promtool test rules ./*.yml >/dev/null)
fi
echo "validate-observability: promtool $(promtool --version 2>&1 | sed -n '1s/^promtool, version \([^ ]*\).*/\1/p'): prometheus.yml and $(ls deploy/prometheus/rules/*.yml | wc -l) rules file(s) valid, rule tests pass"
