"""Customer lifecycle requests: erase a customer, merge one customer into another.

Requests travel on the input topic like events, keyed by the customer they are about,
so they meet that customer's events in order. They are interaction events with a
reserved ``type`` (a dotted name, which no model event type can have):

* ``engagement.customer.erase``: remove every trace of ``customer_id``;
* ``engagement.customer.merge``: ``customer_id`` is the same person as
  ``properties.into``; its history moves there.

Their ``event_id`` is the request id; ``timestamp`` is when it was requested. Each
request gives one :class:`LifecycleEvent` (``engagement.customer.erased`` or
``engagement.customer.merged``) whose id depends only on the request, so a redelivered
request republishes the same id.

>>> raw = (b'{"event_id": "r1", "customer_id": "c-1", "type": "engagement.customer.merge",'
...        b' "timestamp": 1700000000000, "properties": {"into": "c-2"}}')
>>> request = parse_request(raw, now_ms=1_700_000_000_000)
>>> request
Request(kind='merge', request_id='r1', customer_id='c-1', ts_ms=1700000000000, into='c-2')
>>> parse_request(raw.replace(b"c-2", b"c-1"), now_ms=1_700_000_000_000)
Traceback (most recent call last):
...
scoring.errors.InvalidEvent: bad_field: properties.into: must differ from customer_id
>>> from scoring.model import load_default_model
>>> lifecycle_event(request, load_default_model()).cloudevent_type
'engagement.customer.merged'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import orjson

from scoring.errors import InvalidEvent
from scoring.events import MAX_TIMESTAMP_MS, parse_timestamp, validate_customer_id
from scoring.model import Model

__all__ = [
    "ERASE",
    "MARKER",
    "MERGE",
    "LifecycleEvent",
    "Request",
    "encode_request",
    "lifecycle_event",
    "make_request",
    "parse_request",
]

ERASE = "engagement.customer.erase"
MERGE = "engagement.customer.merge"
#: Bytes every request holds (a cheap first test; :func:`parse_request` decides).
MARKER = b"engagement.customer."
_KINDS: dict[str, Literal["erase", "merge"]] = {ERASE: "erase", MERGE: "merge"}


@dataclass(frozen=True, slots=True)
class Request:
    """A valid lifecycle request."""

    kind: Literal["erase", "merge"]
    request_id: str
    customer_id: str
    ts_ms: int
    into: str | None = None


def parse_request(
    raw: bytes, *, now_ms: int, max_future_ms: int = 300_000, max_bytes: int = 65_536
) -> Request | None:
    """The request ``raw`` holds; None when it is not one (its type is not reserved).

    A request that breaks a rule raises :class:`~scoring.errors.InvalidEvent` with the
    reason an event would get (``properties.into`` must be another valid customer id).
    """
    if len(raw) > max_bytes:
        return None  # (parse_event reports it)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("type") not in _KINDS:
        return None
    kind = _KINDS[doc["type"]]
    for name in ("event_id", "customer_id", "timestamp"):
        if name not in doc:
            raise InvalidEvent("missing_field", f"{name}: required")
    request_id, properties = doc["event_id"], doc.get("properties")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 128:
        raise InvalidEvent("bad_field", "event_id: must be a string of 1-128 characters")
    if properties is not None and not isinstance(properties, dict):
        raise InvalidEvent("bad_field", "properties: must be an object")
    customer = validate_customer_id(doc["customer_id"])
    ts_ms = doc["timestamp"]
    if not (type(ts_ms) is int and 0 <= ts_ms <= MAX_TIMESTAMP_MS):
        ts_ms = parse_timestamp(ts_ms)
    if ts_ms > now_ms + max_future_ms:
        raise InvalidEvent("timestamp_in_future", f"timestamp: {ts_ms - now_ms} ms ahead")
    into = _into(properties, customer) if kind == "merge" else None
    return Request(kind, request_id, customer, ts_ms, into)


def make_request(
    kind: Literal["erase", "merge"],
    customer_id: str,
    *,
    request_id: str,
    ts_ms: int,
    into: str | None = None,
) -> Request:
    """A request, checked as :func:`parse_request` checks one read from the topic.

    >>> make_request("merge", "c-1", request_id="r1", ts_ms=0, into="c-1")
    Traceback (most recent call last):
    ...
    scoring.errors.InvalidEvent: bad_field: properties.into: must differ from customer_id
    """
    request = Request(kind, request_id, customer_id, ts_ms, into)
    parsed = parse_request(encode_request(request), now_ms=ts_ms)
    assert parsed == request
    return parsed


def encode_request(request: Request) -> bytes:
    """The message value of a request, as a producer sends it.

    >>> encode_request(Request("erase", "r1", "c-1", 0))
    b'{"event_id":"r1","customer_id":"c-1","type":"engagement.customer.erase","timestamp":0}'
    """
    doc: dict[str, object] = {
        "event_id": request.request_id,
        "customer_id": request.customer_id,
        "type": ERASE if request.kind == "erase" else MERGE,
        "timestamp": request.ts_ms,
    }
    if request.kind == "merge":
        doc["properties"] = {"into": request.into}
    return orjson.dumps(doc)


def _into(properties: dict[str, object] | None, customer: str) -> str:
    """A merge's ``properties.into``: another valid customer id."""
    into = (properties or {}).get("into")
    if into is None:
        raise InvalidEvent("missing_field", "properties.into: required for a merge")
    try:
        validate_customer_id(into)
    except InvalidEvent:
        raise InvalidEvent("bad_field", "properties.into: not a valid customer id") from None
    if into == customer:
        raise InvalidEvent("bad_field", "properties.into: must differ from customer_id")
    assert isinstance(into, str)
    return into


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A customer was erased, or merged into another (``into``); ``event_id`` is its
    CloudEvent id."""

    event_id: str
    kind: Literal["erased", "merged"]
    customer_id: str
    into: str | None
    request_id: str
    occurred_at_ms: float
    model: str
    model_version: int

    @property
    def cloudevent_type(self) -> str:
        """``engagement.customer.erased`` or ``engagement.customer.merged``."""
        return f"engagement.customer.{self.kind}"


def lifecycle_event(request: Request, model: Model) -> LifecycleEvent:
    """The event a request gives; its id is blake2b-128 of the canonical JSON of
    ``[model, model_version, kind, customer_id, into, request_id]``."""
    kind: Literal["erased", "merged"] = "erased" if request.kind == "erase" else "merged"
    canonical = orjson.dumps(
        [model.name, model.version, kind, request.customer_id, request.into, request.request_id]
    )
    return LifecycleEvent(
        hashlib.blake2b(canonical, digest_size=16).hexdigest(),
        kind,
        request.customer_id,
        request.into,
        request.request_id,
        float(request.ts_ms),
        model.name,
        model.version,
    )
