"""Interaction event contract (issue §1): valid shapes and every reason code."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scoring.errors import REASONS, InvalidEvent
from scoring.events import (
    MAX_TIMESTAMP_MS,
    Event,
    parse_event,
    parse_timestamp,
    validate_customer_id,
)
from scoring.model import Model

NOW = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def body(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "e-1",
        "customer_id": "cust-1",
        "type": "email_open",
        "timestamp": "2024-05-01T12:00:00Z",
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not DROP}


DROP = object()


def parse(doc: Any, model: Model, **kw: Any) -> Event:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return parse_event(raw, model, now_ms=kw.pop("now_ms", NOW), **kw)


def test_a_valid_event(default_model: Model) -> None:
    event = parse(body(), default_model)
    assert event == Event("e-1", "cust-1", "email_open", NOW, None)


def test_an_nps_response(default_model: Model) -> None:
    doc = body(type="nps_response", properties={"score": 0})
    assert parse(doc, default_model).nps_score == 0


def test_extra_fields_are_ignored(default_model: Model) -> None:
    doc = body(source="crm", properties={"campaign": "x", "nested": {"a": [1, 2]}}, v=2)
    assert parse(doc, default_model) == parse(body(), default_model)


def test_properties_may_be_null(default_model: Model) -> None:
    assert parse(body(properties=None), default_model).type == "email_open"


def test_every_default_event_type_parses(default_model: Model) -> None:
    for name in default_model.event_types:
        doc = body(type=name, properties={"score": 10})
        assert parse(doc, default_model).type == name


@pytest.mark.parametrize(
    ("timestamp", "ms"),
    [
        ("2024-05-01T12:00:00Z", NOW),
        ("2024-05-01t12:00:00z", NOW),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("2024-05-01T07:30:00-04:30", NOW),
        ("2024-05-01T12:00:00.123Z", NOW + 123),
        ("2024-05-01T12:00:00.1239999Z", NOW + 123),
        ("1970-01-01T00:00:00Z", 0),
        ("9999-12-31T23:59:59.999Z", MAX_TIMESTAMP_MS),
        (NOW, NOW),
        (0, 0),
        (MAX_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
    ],
)
def test_timestamps(timestamp: object, ms: int) -> None:
    assert parse_timestamp(timestamp) == ms


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-05-01T12:00:00",  # no offset
        "2024-05-01 12:00:00Z",  # space separator
        "2024-05-01",
        "2024-05-01T12:00Z",  # no seconds
        "2024-13-01T12:00:00Z",
        "2024-02-30T12:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T23:59:60Z",  # leap seconds are not representable
        "2024-05-01T12:00:00+24:00",
        "1969-12-31T23:59:59Z",  # before the epoch
        "0000-01-01T00:00:00Z",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z",  # non-ASCII digits
        "",
        "now",
        NOW + 0.5,
        float(NOW),
        -1,
        MAX_TIMESTAMP_MS + 1,
        True,
        None,
        [NOW],
        {"ms": NOW},
    ],
)
def test_bad_timestamps(timestamp: object) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_timestamp(timestamp)
    assert info.value.reason == "bad_timestamp"
    assert info.value.detail.startswith("timestamp: ")


@pytest.mark.parametrize(
    "customer_id",
    ["c", "x" * 128, "ñandú-42", "a:b/c@d", "客户"],
)
def test_good_customer_ids(customer_id: str) -> None:
    assert validate_customer_id(customer_id) == customer_id


@pytest.mark.parametrize(
    "customer_id",
    [
        "",
        "x" * 129,
        "a b",
        "a\tb",
        "a\nb",
        "a\x00b",
        "a\x7fb",
        "a\u00a0b",
        "a\u2028b",
        42,
        None,
        ["c"],
    ],
)
def test_bad_customer_ids(customer_id: object) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_customer_id(customer_id)
    assert info.value.reason == "bad_customer_id"
    assert info.value.detail == (
        "customer_id: must be 1-128 characters without whitespace or control characters"
    )


BAD: list[tuple[str, object, str]] = [
    ("too_large", orjson.dumps(body(properties={"pad": "x" * 70_000})), "limit is 65536"),
    ("not_json", b"{not json", "not valid JSON"),
    ("not_json", b'{"a": NaN}', "not valid JSON"),
    ("not_json", b"\xff\xfe", "not valid JSON"),
    ("not_json", b"", "not valid JSON"),
    ("not_object", b"[1, 2]", "array"),
    ("not_object", b'"event"', "string"),
    ("not_object", b"null", "null"),
    ("not_object", b"42", "number"),
    ("missing_field", body(event_id=DROP), "event_id: required"),
    ("missing_field", body(customer_id=DROP), "customer_id: required"),
    ("missing_field", body(type=DROP), "type: required"),
    ("missing_field", body(timestamp=DROP), "timestamp: required"),
    ("bad_field", body(event_id=""), "event_id:"),
    ("bad_field", body(event_id="x" * 129), "event_id:"),
    ("bad_field", body(event_id=7), "event_id:"),
    ("bad_field", body(type=3), "type:"),
    ("bad_field", body(properties=[1]), "properties:"),
    ("bad_field", body(properties="score=9"), "properties:"),
    ("bad_customer_id", body(customer_id="a b"), "customer_id:"),
    ("bad_customer_id", body(customer_id=12345), "customer_id:"),
    ("unknown_type", body(type="email_opened"), "type: 'email_opened'"),
    ("unknown_type", body(type=""), "type:"),
    ("bad_timestamp", body(timestamp="yesterday"), "timestamp:"),
    ("bad_timestamp", body(timestamp=1.7e12), "timestamp:"),
    ("timestamp_in_future", body(timestamp=NOW + 300_001), "timestamp: 300001 ms ahead"),
    ("bad_nps_score", body(type="nps_response"), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={}), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={"score": 11}), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={"score": -1}), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={"score": 9.0}), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={"score": "9"}), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={"score": True}), "properties.score:"),
    ("bad_nps_score", body(type="nps_response", properties={"score": None}), "properties.score:"),
]


@pytest.mark.parametrize(("reason", "doc", "detail"), BAD)
def test_reason_codes(reason: str, doc: object, detail: str, default_model: Model) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse(doc, default_model)
    assert info.value.reason == reason
    assert detail in info.value.detail
    assert str(info.value).startswith(f"{reason}: ")


def test_every_reason_code_is_tested() -> None:
    # (timestamp_too_old needs max_age_ms: test_age_limit_is_exact_and_optional)
    assert {reason for reason, _, _ in BAD} | {"timestamp_too_old"} == set(REASONS)


def test_checks_run_in_the_documented_order(default_model: Model) -> None:
    # every field wrong at once: the first check in the order wins
    doc = {"event_id": 1, "customer_id": "a b", "type": "nope", "timestamp": "x"}
    with pytest.raises(InvalidEvent, match=r"^bad_field: event_id"):
        parse(doc, default_model)
    doc["event_id"] = "e"
    with pytest.raises(InvalidEvent, match=r"^bad_customer_id"):
        parse(doc, default_model)
    doc["customer_id"] = "c"
    with pytest.raises(InvalidEvent, match=r"^unknown_type"):
        parse(doc, default_model)
    doc["type"] = "nps_response"
    with pytest.raises(InvalidEvent, match=r"^bad_timestamp"):
        parse(doc, default_model)
    doc["timestamp"] = NOW + 10**9
    with pytest.raises(InvalidEvent, match=r"^timestamp_in_future"):
        parse(doc, default_model)
    doc["timestamp"] = NOW
    with pytest.raises(InvalidEvent, match=r"^bad_nps_score"):
        parse(doc, default_model)


def test_size_limit_is_exact_and_configurable(default_model: Model) -> None:
    raw = orjson.dumps(body())
    assert parse(raw, default_model, max_bytes=len(raw)).event_id == "e-1"
    with pytest.raises(InvalidEvent, match=r"^too_large"):
        parse(raw, default_model, max_bytes=len(raw) - 1)


def test_future_limit_is_exact_and_configurable(default_model: Model) -> None:
    assert parse(body(timestamp=NOW + 300_000), default_model).ts_ms == NOW + 300_000
    assert parse(body(timestamp=NOW + 60_000), default_model, max_future_ms=60_000)
    with pytest.raises(InvalidEvent, match=r"^timestamp_in_future"):
        parse(body(timestamp=NOW + 60_001), default_model, max_future_ms=60_000)
    # the past has no limit unless one is given: late events are scored
    assert parse(body(timestamp=0), default_model).ts_ms == 0


def test_age_limit_is_exact_and_optional(default_model: Model) -> None:
    day = 86_400_000
    assert parse(body(timestamp=NOW - day), default_model, max_age_ms=day).ts_ms == NOW - day
    with pytest.raises(InvalidEvent, match=r"^timestamp_too_old: timestamp: 86400001 ms behind"):
        parse(body(timestamp=NOW - day - 1), default_model, max_age_ms=day)
    with pytest.raises(InvalidEvent, match=r"^timestamp_too_old"):
        parse(body(timestamp=0), default_model, max_age_ms=400 * day)


def test_deeply_nested_json_is_not_json(default_model: Model) -> None:
    raw = b'{"event_id": "e", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    with pytest.raises(InvalidEvent, match=r"^not_json"):
        parse(raw, default_model)


def test_unknown_reason_codes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown reason code"):
        InvalidEvent("bad_vibes", "x")
