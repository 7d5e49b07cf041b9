"""The payload schemas accept what the app produces and reject what it dead-letters,
exactly where a JSON Schema can tell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scoring import InvalidEvent, load_default_model, parse_event
from stream_app import jsonutil
from stream_app.contracts import DLQ_EXTRA_REASONS, cloudevent, dead_letter
from stream_app.devkit import simulator
from tests.deploy.specs import DAY_MS, DEFAULTS, NOW_MS, verdicts, wire
from tests.support.fold import OfflineFold

# ---- payload schemas against what the app really produces and dead-letters


def test_input_schema_accepts_simulated_traffic(schema_files: dict[str, Path]) -> None:
    model = load_default_model()
    config = simulator.SimConfig.ending(NOW_MS, 60, customers=40, seed=3)
    events = simulator.take_events(config, 400)
    assert {e["type"] for e in events} >= {"nps_response", "email_open", "loyalty_earn"}
    for doc in events:
        parse_event(jsonutil.dumps(doc), model, now_ms=NOW_MS)
        assert verdicts(schema_files["InteractionEvent"], wire(doc)) == {True}, doc


def test_segment_change_schema_accepts_the_cloudevents_the_app_publishes(
    schema_files: dict[str, Path],
) -> None:
    config = simulator.SimConfig.ending(NOW_MS, 120, customers=60, seed=5)
    offline = OfflineFold(load_default_model(), at_ms=NOW_MS)
    for doc in simulator.history(config):
        assert not isinstance(offline.add(jsonutil.dumps(doc)), InvalidEvent), doc
    offline.advance(NOW_MS + 90 * DAY_MS)  # quiet months later: decay changes
    changes = offline.changes()
    kinds = {(c.cloudevent_type, c.cause) for c in changes}
    assert {t for t, _ in kinds} == {
        "engagement.tier.changed", "engagement.segment.entered", "engagement.segment.exited",
    }  # fmt: skip
    assert {c for _, c in kinds} == {"event", "decay"}
    for change in changes:
        assert verdicts(schema_files["SegmentChange"], wire(cloudevent(change))) == {True}


def _dead(raw: bytes, reason: str, detail: str) -> dict[str, Any]:
    return dead_letter(
        reason=reason,
        detail=detail,
        topic=DEFAULTS.input_topic,
        partition=3,
        offset=1041,
        payload=raw,
        received_ms=NOW_MS + 0.5,
    )


def _event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e-1",
        "customer_id": "cust-1",
        "type": "email_click",
        "timestamp": NOW_MS - 60_000,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()

#: Inputs a JSON Schema can reject, and the reason the worker dead-letters each with.
SCHEMA_REJECTS: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2], "not_object"),
    ("missing customer_id", _event(customer_id=_DROP), "missing_field"),
    ("missing event_id", _event(event_id=_DROP), "missing_field"),
    ("missing type", _event(type=_DROP), "missing_field"),
    ("missing timestamp", _event(timestamp=_DROP), "missing_field"),
    ("empty event_id", _event(event_id=""), "bad_field"),
    ("event_id over 128", _event(event_id="x" * 129), "bad_field"),
    ("type not a string", _event(type=5), "bad_field"),
    ("properties a string", _event(properties="x"), "bad_field"),
    ("customer id with a space", _event(customer_id="cust 1"), "bad_customer_id"),
    ("customer id with a tab", _event(customer_id="cust\t1"), "bad_customer_id"),
    ("empty customer id", _event(customer_id=""), "bad_customer_id"),
    ("customer id a number", _event(customer_id=42), "bad_customer_id"),
    ("timestamp a word", _event(timestamp="yesterday"), "bad_timestamp"),
    ("timestamp without offset", _event(timestamp="2024-05-01T12:00:00"), "bad_timestamp"),
    ("timestamp a boolean", _event(timestamp=True), "bad_timestamp"),
    ("timestamp negative", _event(timestamp=-1), "bad_timestamp"),
    ("timestamp fractional ms", _event(timestamp=1.5), "bad_timestamp"),
    ("NPS score 11", _event(type="nps_response", properties={"score": 11}), "bad_nps_score"),
    ("NPS score -1", _event(type="nps_response", properties={"score": -1}), "bad_nps_score"),
    ("NPS score a string", _event(type="nps_response", properties={"score": "9"}), "bad_nps_score"),
    ("NPS without score", _event(type="nps_response", properties={}), "bad_nps_score"),
    ("NPS without properties", _event(type="nps_response"), "bad_nps_score"),
]

#: Inputs only the scoring model or the clock can judge: the schema accepts them, the worker
#: dead-letters them (the list in the AsyncAPI InteractionEvent description).
MODEL_REJECTS: list[tuple[str, Any, str]] = [
    ("type not in the model", _event(type="teleport"), "unknown_type"),
    ("an hour in the future", _event(timestamp=NOW_MS + 3_600_000), "timestamp_in_future"),
    ("not a real instant", _event(timestamp="2024-02-30T00:00:00Z"), "bad_timestamp"),
    ("NPS score 9.0", _event(type="nps_response", properties={"score": 9.0}), "bad_nps_score"),
    ("over 64 KiB", _event(properties={"blob": "x" * 70_000}), "too_large"),
]


def _reason(doc: Any) -> str | None:
    try:
        parse_event(json.dumps(doc).encode(), load_default_model(), now_ms=NOW_MS)
    except InvalidEvent as exc:
        return exc.reason
    return None


@pytest.mark.parametrize(
    ("case", "doc", "reason"), SCHEMA_REJECTS, ids=[c[0] for c in SCHEMA_REJECTS]
)
def test_input_schema_rejects_what_the_worker_dead_letters(
    case: str, doc: Any, reason: str, schema_files: dict[str, Path]
) -> None:
    assert _reason(doc) == reason
    assert verdicts(schema_files["InteractionEvent"], doc) == {False}, case


@pytest.mark.parametrize(
    ("case", "doc", "reason"), MODEL_REJECTS, ids=[c[0] for c in MODEL_REJECTS]
)
def test_what_only_the_model_can_reject_passes_the_schema(
    case: str, doc: Any, reason: str, schema_files: dict[str, Path], asyncapi: dict[str, Any]
) -> None:
    assert _reason(doc) == reason
    assert verdicts(schema_files["InteractionEvent"], doc) == {True}, case
    description = asyncapi["components"]["messages"]["InteractionEvent"]["description"]
    assert f"`{reason}`" in description


def test_input_schema_accepts_what_the_worker_scores(schema_files: dict[str, Path]) -> None:
    accepted = [
        _event(),
        _event(properties=None),
        _event(extra_field={"kept": True}),
        _event(timestamp="2024-05-01T12:00:00.250+02:00"),
        _event(customer_id="acme{eu}-1%"),
        _event(type="nps_response", properties={"score": 0}),
        _event(type="nps_response", properties={"score": 10, "comment": "great"}),
    ]
    for doc in accepted:
        assert _reason(doc) is None, doc
        assert verdicts(schema_files["InteractionEvent"], doc) == {True}, doc


def test_dead_letter_schema_accepts_every_dead_letter_the_worker_writes(
    schema_files: dict[str, Path],
) -> None:
    bodies: list[dict[str, Any]] = []
    for _, doc, reason in SCHEMA_REJECTS + MODEL_REJECTS:
        raw = json.dumps(doc).encode()
        with pytest.raises(InvalidEvent) as caught:
            parse_event(raw, load_default_model(), now_ms=NOW_MS)
        assert caught.value.reason == reason
        bodies.append(_dead(raw, reason, caught.value.detail))
    for raw in (b"\xff\xfe not json", b""):
        with pytest.raises(InvalidEvent) as caught:
            parse_event(raw, load_default_model(), now_ms=NOW_MS)
        bodies.append(_dead(raw, caught.value.reason, caught.value.detail))
    for reason in DLQ_EXTRA_REASONS:
        bodies.append(_dead(json.dumps(_event()).encode(), reason, "RuntimeError: boom"))
    assert {b["reason"] for b in bodies} >= {"not_json", "too_large", "internal_error"}
    for body in bodies:
        assert verdicts(schema_files["DeadLetter"], wire(body)) == {True}, body
