"""The messages the worker writes agree with their published JSON Schemas (pure, no services).

``docs/schemas/segment-change.schema.json`` (CloudEvents 1.0, structured mode) and
``docs/schemas/dead-letter.schema.json`` against ``stream_app.contracts``, fed with changes
computed by the real scoring core.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scoring import (
    REASONS,
    Change,
    Event,
    advance,
    apply,
    load_default_model,
    next_crossing,
)
from stream_app.contracts import DLQ_EXTRA_REASONS, cloudevent, dead_letter, rfc3339

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
DAY_MS = 86_400_000
T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / name).read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture(scope="module")
def change_schema() -> jsonschema.protocols.Validator:
    return _validator("segment-change.schema.json")


@pytest.fixture(scope="module")
def dead_letter_schema() -> jsonschema.protocols.Validator:
    return _validator("dead-letter.schema.json")


@functools.cache
def real_changes() -> tuple[Change, ...]:
    """Changes of every kind from the real core: a tier up, a segment entered on an event,
    then decay crossings (a segment entered and a tier down with no event)."""
    model = load_default_model()
    changes: list[Change] = []
    state = None
    for n, (type_, nps) in enumerate(
        [("webinar_attended", None), ("webinar_attended", None), ("nps_response", 10)]
    ):
        result = apply(state, Event(f"e{n}", "c-42", type_, T0 + n, nps), model)
        state = result.state
        changes += result.changes
    assert state is not None
    while (crossing := next_crossing(state, model)) is not None:
        state, fired = advance(state, "c-42", crossing, model)
        changes += fired
        assert len(changes) < 50
    kinds = {(c.cloudevent_type, c.cause) for c in changes}
    assert {
        ("engagement.tier.changed", "event"),
        ("engagement.segment.entered", "event"),
        ("engagement.tier.changed", "decay"),
    } <= kinds, kinds
    return tuple(changes)


def test_schemas_examples_are_valid(
    change_schema: jsonschema.protocols.Validator,
    dead_letter_schema: jsonschema.protocols.Validator,
) -> None:
    for validator in (change_schema, dead_letter_schema):
        examples = validator.schema["examples"]
        assert examples
        for doc in examples:
            validator.validate(doc)


def test_cloudevent_of_real_changes_validates(
    change_schema: jsonschema.protocols.Validator,
) -> None:
    for change in real_changes():
        ce = cloudevent(change)
        change_schema.validate(ce)
        # the JSON the worker writes (orjson) validates too, and reads back the same
        from stream_app import jsonutil

        assert jsonutil.loads(jsonutil.dumps(ce)) == ce
        assert ce["id"] == change.change_id
        assert ce["subject"] == ce["data"]["customer_id"] == "c-42"
        assert ce["source"] == f"urn:engagement-scorer:{ce['data']['model']}"
        assert ce["time"] == rfc3339(change.occurred_at_ms)
        if change.kind == "tier":
            assert ce["data"]["segment"] == ce["data"]["to"]
            assert ce["type"] == "engagement.tier.changed"
        if change.cause == "decay":
            assert ce["data"]["cause_event_id"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("specversion", "0.3"),
        ("id", "not-a-change-id"),
        ("source", "urn:other:default"),
        ("type", "engagement.tier.moved"),
        ("time", "2024-05-01T12:00:00+02:00"),
        ("datacontenttype", "text/plain"),
        ("data.kind", "segment"),  # a tier change must say kind "tier"
        ("data.from", None),  # ... and name the tier it left
        ("data.score", None),  # a NaN score would be written as null
        ("data.cause", "timer"),
        ("data.cause_event_id", None),  # cause "event" names its event
        ("data.model_version", 0),
        ("data.extra", 1),
    ],
)
def test_schema_rejects_a_broken_change(
    change_schema: jsonschema.protocols.Validator, field: str, value: Any
) -> None:
    tier_up = next(c for c in real_changes() if c.kind == "tier" and c.cause == "event")
    ce = cloudevent(tier_up)
    change_schema.validate(ce)
    target = ce
    *parents, leaf = field.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = value
    assert not change_schema.is_valid(ce)


def test_schema_requires_every_field(change_schema: jsonschema.protocols.Validator) -> None:
    ce = cloudevent(real_changes()[0])
    for name in list(ce):
        broken = {k: v for k, v in ce.items() if k != name}
        assert not change_schema.is_valid(broken), name
    for name in list(ce["data"]):
        if name == "occurred_at_ms":
            continue
        broken = {**ce, "data": {k: v for k, v in ce["data"].items() if k != name}}
        assert not change_schema.is_valid(broken), name


def test_dead_letter_schema_knows_every_reason(
    dead_letter_schema: jsonschema.protocols.Validator,
) -> None:
    enum = dead_letter_schema.schema["properties"]["reason"]["enum"]
    assert enum == [*REASONS, *DLQ_EXTRA_REASONS]


@pytest.mark.parametrize("reason", [*REASONS, *DLQ_EXTRA_REASONS])
@pytest.mark.parametrize(
    "payload", [b"", b"{not json", b"\xff\xfe\x00binary", "caf\u00e9 \U0001f600".encode()]
)
def test_dead_letter_validates_and_keeps_the_exact_bytes(
    dead_letter_schema: jsonschema.protocols.Validator, reason: str, payload: bytes
) -> None:
    body = dead_letter(
        reason=reason,
        detail="field: what is wrong",
        topic="engagement.interactions",
        partition=3,
        offset=1041,
        payload=payload,
        received_ms=T0 + 250.7,
    )
    dead_letter_schema.validate(body)
    assert base64.b64decode(body["payload_b64"], validate=True) == payload
    assert body["source"] == {"topic": "engagement.interactions", "partition": 3, "offset": 1041}
    assert body["received_at"] == "2024-05-01T12:00:00.250Z"


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("reason", "exploded"),
        ("detail", ""),
        ("payload_b64", "not base64!"),
        ("source.partition", -1),
        ("source.offset", "12"),
        ("received_at", "2024-05-01 12:00:00"),
    ],
)
def test_dead_letter_schema_rejects(
    dead_letter_schema: jsonschema.protocols.Validator, change: str, value: Any
) -> None:
    body = dead_letter(
        reason="not_json",
        detail="d",
        topic="t",
        partition=0,
        offset=0,
        payload=b"x",
        received_ms=0,
    )
    dead_letter_schema.validate(body)
    target: dict[str, Any] = body
    *parents, leaf = change.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = value
    assert not dead_letter_schema.is_valid(body)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999.999, "1970-01-01T00:00:00.999Z"),  # truncated, never rounded into the next second
        (T0, "2024-05-01T12:00:00.000Z"),
        (1_700_000_000_123.9, "2023-11-14T22:13:20.123Z"),
        (951_782_400_000, "2000-02-29T00:00:00.000Z"),  # a leap day
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),  # the last instant the core accepts
    ],
)
def test_rfc3339(ms: float, text: str) -> None:
    assert rfc3339(ms) == text
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo == UTC
    assert round(parsed.timestamp() * 1000) == int(ms)
