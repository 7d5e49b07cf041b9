"""The published JSON Schema of the interaction event agrees with the parser."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jsonschema
import orjson
import pytest

from scoring.errors import InvalidEvent
from scoring.events import parse_event
from scoring.model import Model

SCHEMA_PATH = (
    pathlib.Path(__file__).resolve().parents[2] / "docs/schemas/interaction-event.schema.json"
)
NOW = 1_714_564_800_000


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def good(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e",
        "customer_id": "c",
        "type": "email_open",
        "timestamp": "2024-05-01T12:00:00Z",
    }
    doc.update(fields)
    return doc


def test_the_examples_are_valid_and_parse(
    validator: jsonschema.protocols.Validator, default_model: Model
) -> None:
    examples = validator.schema["examples"]
    assert len(examples) >= 2
    for doc in examples:
        validator.validate(doc)
        parse_event(orjson.dumps(doc), default_model, now_ms=NOW)


@pytest.mark.parametrize(
    "doc",
    [
        good(),
        good(timestamp=NOW, properties=None),
        good(timestamp="2024-05-01t14:00:00.5+02:00", extra={"any": ["thing"]}),
        good(type="nps_response", properties={"score": 0}),
        good(customer_id="x" * 128, event_id="y" * 128),
    ],
)
def test_both_accept(
    doc: dict[str, Any], validator: jsonschema.protocols.Validator, default_model: Model
) -> None:
    validator.validate(doc)
    parse_event(orjson.dumps(doc), default_model, now_ms=NOW)


@pytest.mark.parametrize(
    "doc",
    [
        {"customer_id": "c", "type": "email_open", "timestamp": NOW},
        good(event_id=""),
        good(event_id="y" * 129),
        good(customer_id="a b"),
        good(customer_id="a\u0007b"),
        good(customer_id=""),
        good(type=5),
        good(timestamp="2024-05-01T12:00:00"),
        good(timestamp="2024-05-01 12:00:00Z"),
        good(timestamp=-1),
        good(timestamp=True),
        good(properties=[]),
        good(type="nps_response"),
        good(type="nps_response", properties={"score": 11}),
        good(type="nps_response", properties={"score": "9"}),
        [good()],
    ],
)
def test_both_reject(
    doc: Any, validator: jsonschema.protocols.Validator, default_model: Model
) -> None:
    assert not validator.is_valid(doc)
    with pytest.raises(InvalidEvent):
        parse_event(orjson.dumps(doc), default_model, now_ms=NOW)
