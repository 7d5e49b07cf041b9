"""Interaction events: raw message bytes in, a small frozen :class:`Event` out.

Anything that cannot be scored raises :class:`~scoring.errors.InvalidEvent` with a
reason code from :data:`~scoring.errors.REASONS` and a detail naming the field. The
checks run in a fixed order, so one message always gets the same reason: size, JSON,
object, required fields, field types, customer id, event type, timestamp, future
timestamp, NPS score. The contract is in ``docs/scoring.md`` and
``docs/schemas/interaction-event.schema.json``.

>>> from scoring.model import load_default_model
>>> model = load_default_model()
>>> raw = (b'{"event_id": "e1", "customer_id": "c-42", "type": "nps_response",'
...        b' "timestamp": "2024-05-01T12:00:00Z", "properties": {"score": 9}}')
>>> parse_event(raw, model, now_ms=1_714_564_800_000)
Event(event_id='e1', customer_id='c-42', type='nps_response', ts_ms=1714564800000, nps_score=9)
>>> parse_event(b'{"event_id": "e1"}', model, now_ms=0)
Traceback (most recent call last):
...
scoring.errors.InvalidEvent: missing_field: customer_id: required
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from scoring.errors import InvalidEvent
from scoring.model import Model

__all__ = [
    "MAX_TIMESTAMP_MS",
    "NPS_RESPONSE",
    "Event",
    "parse_event",
    "parse_timestamp",
    "validate_customer_id",
]

#: 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
MAX_TIMESTAMP_MS = 253_402_300_799_999
#: The event type whose ``properties.score`` is an NPS answer.
NPS_RESPONSE = "nps_response"
_REQUIRED = ("event_id", "customer_id", "type", "timestamp")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Event:
    """A valid interaction event; ``ts_ms`` is its event time in epoch milliseconds."""

    event_id: str
    customer_id: str
    type: str
    ts_ms: int
    nps_score: int | None = None


def validate_customer_id(value: object) -> str:
    """A customer id: a string of 1-128 characters, no whitespace or control characters.

    >>> validate_customer_id("c-42")
    'c-42'
    >>> validate_customer_id("a b")
    Traceback (most recent call last):
    ...
    scoring.errors.InvalidEvent: bad_customer_id: customer_id: must be 1-128 characters without whitespace or control characters
    """  # noqa: E501
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 128
        or not value.isprintable()
        or " " in value
    ):
        raise InvalidEvent(
            "bad_customer_id",
            "customer_id: must be 1-128 characters without whitespace or control characters",
        )
    return value


def parse_timestamp(value: object) -> int:
    """Event time in epoch ms from RFC 3339 (offset or Z required) or integer epoch ms.

    Fractions below a millisecond are truncated toward the past.

    >>> parse_timestamp("2024-05-01T14:00:00.5+02:00"), parse_timestamp(1714564800000)
    (1714564800500, 1714564800000)
    >>> parse_timestamp("2024-05-01 12:00:00")
    Traceback (most recent call last):
    ...
    scoring.errors.InvalidEvent: bad_timestamp: timestamp: must be RFC 3339 with an offset or Z, or integer epoch milliseconds
    """  # noqa: E501
    detail = "timestamp: must be RFC 3339 with an offset or Z, or integer epoch milliseconds"
    if type(value) is int:
        ms = value
    elif isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.upper())
        except ValueError:
            raise InvalidEvent("bad_timestamp", detail) from None
        ms = (moment - _EPOCH) // _MS
    else:
        raise InvalidEvent("bad_timestamp", detail)
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise InvalidEvent(
            "bad_timestamp", "timestamp: must lie between 1970-01-01 and 9999-12-31 (UTC)"
        )
    return ms


def parse_event(
    raw: bytes,
    model: Model,
    *,
    now_ms: int,
    max_future_ms: int = 300_000,
    max_bytes: int = 65_536,
    max_age_ms: int | None = None,
) -> Event:
    """Parse and validate one message against ``model`` at processing time ``now_ms``.

    ``max_age_ms`` (None: no limit) refuses events older than that before ``now_ms``.
    """
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"message is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"message is a JSON {_json_type(doc)}, not an object")
    event_id, type_, properties = _fields(doc)
    customer = validate_customer_id(doc["customer_id"])
    if type_ not in model.event_types:
        shown = type_ if len(type_) <= 64 else type_[:64] + "..."
        raise InvalidEvent(
            "unknown_type", f"type: {shown!r} is not an event type of model {model.name!r}"
        )
    ts_ms = doc["timestamp"]
    if not (type(ts_ms) is int and 0 <= ts_ms <= MAX_TIMESTAMP_MS):  # else the common case
        ts_ms = parse_timestamp(ts_ms)
    if ts_ms > now_ms + max_future_ms:
        raise InvalidEvent(
            "timestamp_in_future",
            f"timestamp: {ts_ms - now_ms} ms ahead of the processing clock "
            f"(the limit is {max_future_ms} ms)",
        )
    if max_age_ms is not None and ts_ms < now_ms - max_age_ms:
        raise InvalidEvent(
            "timestamp_too_old",
            f"timestamp: {now_ms - ts_ms} ms behind the processing clock "
            f"(the limit is {max_age_ms} ms)",
        )
    nps_score = None
    if type_ == NPS_RESPONSE:
        score = (properties or {}).get("score")
        if type(score) is not int or not 0 <= score <= 10:
            raise InvalidEvent("bad_nps_score", "properties.score: must be an integer 0-10")
        nps_score = score
    return Event(event_id, customer, type_, ts_ms, nps_score)


def _fields(doc: dict[str, object]) -> tuple[str, str, dict[str, object] | None]:
    """Required fields present; event_id, type and properties of the right types."""
    for name in _REQUIRED:
        if name not in doc:
            raise InvalidEvent("missing_field", f"{name}: required")
    event_id, type_, properties = doc["event_id"], doc["type"], doc.get("properties")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
        raise InvalidEvent("bad_field", "event_id: must be a string of 1-128 characters")
    if not isinstance(type_, str):
        raise InvalidEvent("bad_field", "type: must be a string")
    if properties is not None and not isinstance(properties, dict):
        raise InvalidEvent("bad_field", "properties: must be an object")
    return event_id, type_, properties


def _json_type(doc: object) -> str:
    if isinstance(doc, list):
        return "array"
    if isinstance(doc, str):
        return "string"
    if doc is None:
        return "null"
    if isinstance(doc, bool):
        return "boolean"
    return "number"
