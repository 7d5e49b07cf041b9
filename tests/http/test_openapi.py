"""``docs/openapi.yaml`` against the routes and error codes in the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import yaml

from stream_app.http import api as api_module
from stream_app.http.api import ReadApi
from tests.http.readapi import OPENAPI, REPO, TODAY, VIEWS, run

#: Routes open to anyone: liveness, and the dashboard page (it holds no data).
OPEN_PATHS = {"/healthz", "/dashboard", "/dashboard/static/{name}"}

# --------------------------------------------------------------------------- OpenAPI


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    doc = yaml.safe_load(OPENAPI.read_text("utf-8"))
    assert isinstance(doc, dict)
    return doc


def routes() -> set[str]:
    """The paths ``views.py`` routes, with aiohttp's ``{name:regex}`` reduced to ``{name}``."""
    found = re.findall(r'@app\.page\("([^"]+)"\)', VIEWS.read_text("utf-8"))
    return {re.sub(r"\{(\w+):[^}]*\}", r"{\1}", p) for p in found}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def resolve(openapi: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its ``$ref`` points to."""
    if "$ref" not in node:
        return node
    target: Any = openapi
    for part in node["$ref"][2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(target, dict)
    return target


def test_openapi_documents_every_route_and_only_those(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"] == "3.1.0"
    assert set(openapi["paths"]) == routes()
    assert len(routes()) == 16
    for path, item in openapi["paths"].items():
        admin = path.endswith(("/erase", "/merge"))
        assert set(item) == ({"post"} if admin else {"get"}), path  # POST: erase and merge
        op = item["post" if admin else "get"]
        ok = "202" if admin else "200"
        assert op["operationId"] and op["summary"] and ok in op["responses"], path
        for param in re.findall(r"\{(\w+)\}", path):
            declared = [resolve(openapi, p) for p in op.get("parameters", [])]
            assert any(p["name"] == param and p["in"] == "path" for p in declared), (path, param)


def test_openapi_security(openapi: dict[str, Any]) -> None:
    schemes = openapi["components"]["securitySchemes"]
    assert {k: (v["type"], v["scheme"]) for k, v in schemes.items()} == {
        "apiToken": ("http", "bearer"),
        "opsToken": ("http", "bearer"),
        "adminToken": ("http", "bearer"),
    }
    for path, item in openapi["paths"].items():
        op = item.get("get") or item["post"]
        if "post" in item:
            assert op["security"] == [{"adminToken": []}], path
            assert op["responses"]["403"] == {"$ref": "#/components/responses/AdminDisabled"}
        elif path.startswith("/v1/"):
            assert op["security"] == [{"apiToken": []}, {}], path
        elif path in OPEN_PATHS:
            assert op["security"] == [], path
        else:
            assert op["security"] == [{"opsToken": []}, {}], path
        if path not in OPEN_PATHS:
            assert op["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
        else:
            assert "401" not in op["responses"], path
    header = openapi["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"]
    assert header["schema"]["const"] == "Bearer"


def test_openapi_refs_resolve_and_schemas_are_valid(openapi: dict[str, Any]) -> None:
    for ref in set(refs(openapi)):
        assert ref.startswith("#/"), ref
        resolve(openapi, {"$ref": ref})
    for schema in openapi["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def error_validator(openapi: dict[str, Any]) -> jsonschema.Draft202012Validator:
    schema = {"$ref": "#/components/schemas/Error", "components": openapi["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_openapi_error_codes_are_the_codes_of_the_code(openapi: dict[str, Any]) -> None:
    sources = "".join(
        (REPO / "stream_app" / "http" / f).read_text("utf-8")
        for f in ("api.py", "views.py", "admin.py", "dashboard.py", "npsdaily.py", "timeline.py")
    )
    used = set(re.findall(r'(?:error|ApiError)\(\s*\d{3},\s*"(\w+)"', sources))
    documented = openapi["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert used == set(documented["code"]["enum"])
    # every example error body is a valid Error
    validator = error_validator(openapi)
    examples: list[Any] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "example" in node:
                examples.append(node["example"])
            for ex in (
                node.get("examples", {}).values() if isinstance(node.get("examples"), dict) else ()
            ):
                examples.append(ex["value"])
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(openapi)
    errors = [e for e in examples if isinstance(e, dict) and "error" in e]
    assert len(errors) >= 8
    for example in errors:
        validator.validate(example)


def test_the_api_error_bodies_fit_the_documented_schema(
    read_api: ReadApi, openapi: dict[str, Any]
) -> None:
    validator = error_validator(openapi)
    for answer in (
        run(read_api.customer("bad id")),
        run(read_api.members("nope", {})),
        run(read_api.members("advocate", {"limit": "0"})),
        run(read_api.members("advocate", {"cursor": "a b"})),
        run(read_api.nps({"by": "x"}, today=TODAY)),
        run(read_api.nps({"from": "x"}, today=TODAY)),
        api_module.error(401, "unauthorized", "a valid bearer token is required"),
    ):
        validator.validate(answer[1])
