"""The AsyncAPI document and the payload schema file of each of its messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.specs import DOCS, load_yaml, schema_file


@pytest.fixture(scope="package")
def asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(DOCS / "asyncapi.yaml")
    return doc


@pytest.fixture(scope="package")
def schema_files(asyncapi: dict[str, Any]) -> dict[str, Path]:
    messages = asyncapi["components"]["messages"]
    return {name: schema_file(msg) for name, msg in messages.items()}
