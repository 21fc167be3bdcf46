"""The client against the live server's `/openapi.json`: every route, parameter and header it uses,
and every response field it reads, must be documented there, so API drift fails the tests."""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Set, Type, Union, get_args, get_origin, get_type_hints

import pytest
from harness import GantryServer

from gantry_client import ErrorDetail, Explanation, Status, Workload, WorkloadPage
from gantry_client.client import QUERY_PARAMETERS, REQUEST_HEADERS, RESPONSE_HEADERS, ROUTES
from gantry_client.models import json_name

#: What each route's success answer decodes to: (route name, status, dataclass).
RESPONSES = [
    ("submit", "201", Workload),
    ("submit", "200", Workload),
    ("status", "200", Status),
    ("workloads", "200", WorkloadPage),
    ("cancel", "200", Workload),
    ("cancel", "202", Workload),
    ("explain", "200", Explanation),
]

#: JSON Schema types a Python annotation may be read from.
JSON_TYPES = {int: {"integer"}, float: {"number", "integer"}, str: {"string"}, bool: {"boolean"}}


@pytest.fixture(scope="module")
def doc(server: GantryServer, tokens: Dict[str, str]) -> Dict[str, Any]:
    return server.openapi(tokens["admin"])


def served(server: GantryServer, token: str, name: str) -> bool:
    """Whether the server has route `name` at all (a 404 naming no route means it has not)."""
    method, path = ROUTES[name]
    req = urllib.request.Request(
        server.url + path.replace("{id}", "wl-1"),
        method=method,
        data=b"" if method == "POST" else None,
    )
    req.add_header("Authorization", f"Bearer {token}")
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as e:
        return not (e.code == 404 and b"no such route" in e.read())
    return True


def operation(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    method, path = ROUTES[name]
    op = doc["paths"].get(path, {}).get(method.lower())
    assert op is not None, f"{method} {path} (Client.{name}) is not in /openapi.json"
    return op  # type: ignore[no-any-return]


def resolve(doc: Dict[str, Any], schema: Dict[str, Any]) -> Dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def variants(doc: Dict[str, Any], schema: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The non-null alternatives of a schema (`oneOf`/`anyOf` with null, as utoipa writes Option)."""
    schema = resolve(doc, schema)
    alts = schema.get("oneOf") or schema.get("anyOf")
    if alts:
        out = []
        for a in alts:
            out += [v for v in variants(doc, a) if v.get("type") != "null"]
        return out
    return [schema]


def types_of(schema: Dict[str, Any]) -> Set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return ({t} if isinstance(t, str) else set(t)) - {"null"}


def unwrap(hint: Any) -> Any:
    if get_origin(hint) is Union:
        inner = [a for a in get_args(hint) if a is not type(None)]
        return inner[0] if len(inner) == 1 else Any
    return hint


def check_fields(doc: Dict[str, Any], cls: Type[Any], schema: Dict[str, Any], where: str) -> List[str]:
    """Problems: fields of `cls` that `schema` lacks or types it says otherwise."""
    problems = []
    objects = [v for v in variants(doc, schema) if "properties" in v]
    if not objects:
        return [f"{where}: no object schema for {cls.__name__}"]
    props = objects[0]["properties"]
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "raw":
            continue
        key = json_name(f)
        here = f"{where}.{key}"
        if key not in props:
            problems.append(f"{here}: {cls.__name__}.{f.name} reads it; not documented")
            continue
        hint = unwrap(hints[f.name])
        prop_variants = variants(doc, props[key])
        if get_origin(hint) in (list, List):
            (item,) = get_args(hint)
            arrays = [v for v in prop_variants if "array" in types_of(v)]
            if not arrays:
                problems.append(f"{here}: documented as {props[key]}, the client reads a list")
            elif isinstance(item, type) and dataclasses.is_dataclass(item):
                problems += check_fields(doc, item, arrays[0].get("items", {}), here + "[]")
        elif isinstance(hint, type) and dataclasses.is_dataclass(hint):
            problems += check_fields(doc, hint, props[key], here)
        elif hint in JSON_TYPES:
            documented = set().union(*(types_of(v) for v in prop_variants))
            if documented and not documented & JSON_TYPES[hint]:
                problems.append(
                    f"{here}: documented as {sorted(documented)}, the client reads {hint.__name__}"
                )
    return problems


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_route_the_client_calls_is_documented(
    doc: Dict[str, Any], server: GantryServer, tokens: Dict[str, str], name: str
) -> None:
    if name == "explain" and not served(server, tokens["admin"], name):
        pytest.skip("GET /api/workloads/{id}/explain is not served by this build (404)")
    op = operation(doc, name)
    params = {(p["in"], p["name"].lower()) for p in op.get("parameters", [])}
    for q in QUERY_PARAMETERS.get(name, ()):
        assert ("query", q) in params, f"query parameter {q} of {ROUTES[name]} is not documented"
    for h in REQUEST_HEADERS.get(name, ()):
        assert ("header", h.lower()) in params, f"header {h} of {ROUTES[name]} is not documented"
    if "{id}" in ROUTES[name][1]:
        assert ("path", "id") in params
    ok = op["responses"].get("200") or op["responses"].get("201")
    assert ok is not None, f"{ROUTES[name]} documents no success answer"
    documented = {k.lower() for k in ok.get("headers", {})}
    for h in RESPONSE_HEADERS.get(name, ()):
        assert h.lower() in documented, f"response header {h} of {ROUTES[name]} is not documented"
    errors = {s for s in op["responses"] if s.startswith("4")}
    assert "401" in errors, f"{ROUTES[name]} does not document 401 (auth)"


@pytest.mark.parametrize(("name", "status", "cls"), RESPONSES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_field_the_client_reads_is_documented(
    doc: Dict[str, Any],
    server: GantryServer,
    tokens: Dict[str, str],
    name: str,
    status: str,
    cls: Type[Any],
) -> None:
    if name == "explain" and not served(server, tokens["admin"], name):
        pytest.skip("GET /api/workloads/{id}/explain is not served by this build (404)")
    op = operation(doc, name)
    response = op["responses"].get(status)
    assert response is not None, f"{ROUTES[name]} does not document {status}"
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    assert schema is not None, f"{ROUTES[name]} {status} documents no JSON body"
    problems = check_fields(doc, cls, schema, f"{ROUTES[name][1]} {status}")
    assert not problems, "\n".join(problems)


def test_the_error_body_is_documented(doc: Dict[str, Any]) -> None:
    body = doc["components"]["schemas"]["ErrorBody"]
    assert check_fields(doc, ErrorDetail, body["properties"]["error"], "ErrorBody.error") == []
    # Every documented 4xx of the client's routes is an ErrorBody.
    for name in ROUTES:
        method, path = ROUTES[name]
        op: Optional[Dict[str, Any]] = doc["paths"].get(path, {}).get(method.lower())
        for code, r in (op or {}).get("responses", {}).items():
            if code.startswith("4"):
                ref = r["content"]["application/json"]["schema"].get("$ref", "")
                assert ref.endswith("/ErrorBody"), f"{method} {path} {code}: {ref}"


def test_the_checker_catches_drift(doc: Dict[str, Any]) -> None:
    """A field the server does not document is reported (the check above can fail)."""

    @dataclasses.dataclass
    class Drifted:
        id: str
        exit_status: Optional[int]
        state: List[str]

    schema = {"$ref": "#/components/schemas/WorkloadView"}
    problems = check_fields(doc, Drifted, schema, "WorkloadView")
    assert any("exitStatus" in p for p in problems), problems
    assert any("state" in p and "list" in p for p in problems), problems


def test_every_parameter_is_where_the_document_says(doc: Dict[str, Any]) -> None:
    """A parameter documented `in: path` must be in its path's template (a query struct without
    `#[into_params(parameter_in = Query)]` is documented as path parameters: clients and fuzzers
    then never send it as a query)."""
    misplaced = [
        f"{method.upper()} {path}: {p['name']}"
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for p in op.get("parameters", [])
        if p["in"] == "path" and "{" + p["name"] + "}" not in path
    ]
    assert not misplaced, "documented in: path but not in the path (should be in: query):\n" + "\n".join(
        misplaced
    )


def test_every_route_behind_auth_documents_401(doc: Dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if op.get("security") and "401" not in op["responses"]
    ]
    assert not missing, "secured but no 401 documented:\n" + "\n".join(missing)
