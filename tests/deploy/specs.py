"""Where the deployment artefacts are, and reading them: YAML, JSON pointers, the payload
schemas under both JSON Schema drafts."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012

from stream_app import jsonutil
from stream_app.settings import PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
DOCS = REPO / "docs"
SETTING_NAMES = frozenset(PREFIX + f.name.upper() for f in fields(Settings))
DEFAULTS = Settings()
NOW_MS = 1_750_000_000_000
DAY_MS = 86_400_000


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def pointer(doc: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def schema_file(message: dict[str, Any]) -> Path:
    ref = message["payload"]["schema"]["$ref"]
    path = (DOCS / ref).resolve()
    assert path.parent == (DOCS / "schemas").resolve(), ref
    return path


@functools.cache
def validators(path: Path) -> list[jsonschema.protocols.Validator]:
    """The schema under JSON Schema 2020-12 (what the files and the AsyncAPI document
    declare) and draft-07 (what older consumers' validators speak): both must give the same
    verdicts."""
    schema = json.loads(path.read_text("utf-8"))
    out: list[jsonschema.protocols.Validator] = []
    for cls, spec in (
        (jsonschema.Draft202012Validator, DRAFT202012),
        (jsonschema.Draft7Validator, DRAFT7),
    ):
        body = {k: v for k, v in schema.items() if k != "$schema"}
        registry: Registry[Any] = Registry().with_resource(
            schema["$id"], Resource.from_contents(body, default_specification=spec)
        )
        cls.check_schema(body)
        out.append(cls(body, registry=registry, format_checker=cls.FORMAT_CHECKER))
    return out


def verdicts(path: Path, doc: Any) -> set[bool]:
    return {v.is_valid(doc) for v in validators(path)}


def wire(obj: Any) -> Any:
    """What a consumer reads: the app's own JSON encoding, decoded."""
    return json.loads(jsonutil.dumps(obj))
