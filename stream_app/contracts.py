"""The messages the scorer writes: segment-change CloudEvents and dead letters.

JSON Schemas for both live in ``docs/schemas/``; tests validate these builders
against them.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from scoring import Change
from scoring.lifecycle import LifecycleEvent

#: Dead-letter reasons of the worker itself, beside the scoring core's (``scoring.REASONS``).
DLQ_EXTRA_REASONS = (
    "internal_error",  # the scorer failed on a valid event: a bug, the event is kept here
    "key_too_large",  # the message key is over MAX_KEY_BYTES
    "corrupt_state",  # the customer's stored record no longer decodes; left untouched
    "store_rejected",  # Redis refused the customer's write for good (e.g. WRONGTYPE)
)

#: The most payload bytes a dead letter carries: base64 and the envelope keep the record under
#: 1,000,000 bytes, faust's default ``producer_max_request_size`` and about Kafka's default
#: ``message.max.bytes`` (1 MiB input messages made 1.4 MB dead letters that never went out).
#: Smaller when the configured message limit asks for it (``stream_app.worker.deadletter``).
MAX_DEAD_PAYLOAD = 512 * 1024


def rfc3339(ms: float) -> str:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision.

    >>> rfc3339(0)
    '1970-01-01T00:00:00.000Z'
    >>> rfc3339(1700000000123.9)
    '2023-11-14T22:13:20.123Z'
    """
    whole = int(ms)
    return f"{_second(whole // 1000)}.{whole % 1000:03d}Z"


@lru_cache(maxsize=256)
def _second(epoch_s: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of one UTC second (changes come in bursts of few seconds)."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


#: The ``$id`` of ``docs/schemas/segment-change.schema.json`` (the whole CloudEvent).
SEGMENT_CHANGE_SCHEMA = "https://engagement-scorer.invalid/schemas/segment-change.schema.json"
#: A CloudEvent's ``dataschema``: that schema's definition of ``data``, by JSON Pointer.
DATASCHEMA = SEGMENT_CHANGE_SCHEMA + "#/$defs/data"


def cloudevent(change: Change) -> dict[str, Any]:
    """A segment change as a CloudEvents 1.0 structured-mode JSON object.

    ``dataschema`` names the JSON Schema of ``data``; ``partitionkey`` (the CloudEvents
    Partitioning extension) is the customer id, which is also the Kafka message key.
    """
    return {
        "specversion": "1.0",
        "id": change.change_id,
        "source": f"urn:engagement-scorer:{change.model}",
        "type": change.cloudevent_type,
        "subject": change.customer_id,
        "time": rfc3339(change.occurred_at_ms),
        "datacontenttype": "application/json",
        "dataschema": DATASCHEMA,
        "partitionkey": change.customer_id,
        "data": {
            "customer_id": change.customer_id,
            "kind": change.kind,
            "segment": change.name,
            "from": change.from_tier,
            "to": change.to_tier,
            "score": change.score,
            "dimensions": dict(change.dimensions),
            "model": change.model,
            "model_version": change.model_version,
            "cause": change.cause,
            "cause_event_id": change.cause_event_id,
            "occurred_at_ms": change.occurred_at_ms,
        },
    }


def lifecycle_cloudevent(event: LifecycleEvent) -> dict[str, Any]:
    """A customer erased or merged away, as a CloudEvents 1.0 structured-mode JSON object:
    no personal data beyond the ids.

    >>> from scoring.lifecycle import Request, lifecycle_event
    >>> from scoring import load_default_model
    >>> ev = lifecycle_event(Request("erase", "r1", "c-1", 0), load_default_model())
    >>> doc = lifecycle_cloudevent(ev)
    >>> doc["type"], doc["subject"], sorted(doc["data"])
    ('engagement.customer.erased', 'c-1', ['customer_id', 'model', 'model_version', 'occurred_at_ms', 'request_id'])
    """  # noqa: E501
    data: dict[str, Any] = {"customer_id": event.customer_id}
    if event.into is not None:
        data["into"] = event.into
    data.update(
        request_id=event.request_id,
        model=event.model,
        model_version=event.model_version,
        occurred_at_ms=event.occurred_at_ms,
    )
    return {
        "specversion": "1.0",
        "id": event.event_id,
        "source": f"urn:engagement-scorer:{event.model}",
        "type": event.cloudevent_type,
        "subject": event.customer_id,
        "time": rfc3339(event.occurred_at_ms),
        "datacontenttype": "application/json",
        "data": data,
    }


def dead_letter(
    *,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    payload: bytes,
    received_ms: float,
    payload_limit: int = MAX_DEAD_PAYLOAD,
    key: bytes | None = None,
    key_limit: int = 0,
    customer_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The dead-letter record of one message that could not be scored.

    A payload above ``payload_limit`` bytes is cut to that many: the record must stay
    publishable (a dead letter the producer or broker refuses would be retried forever and
    stall the worker). The record then says so, with the original size and SHA-256; the
    message itself is still at ``source``. ``key``, when given, is recorded the same way,
    cut to ``key_limit`` bytes (the dead letter's own Kafka key is then left empty).
    ``customer_id`` and ``event_id`` name a valid event that failed later on.

    >>> body = dead_letter(reason="too_large", detail="d", topic="t", partition=0, offset=1,
    ...                    payload=b"x" * (MAX_DEAD_PAYLOAD + 1), received_ms=0)
    >>> body["payload_truncated"], body["payload_size"], len(base64.b64decode(body["payload_b64"]))
    (True, 524289, 524288)
    """
    body: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "received_at": rfc3339(received_ms),
        "payload_b64": base64.b64encode(payload[: max(payload_limit, 0)]).decode("ascii"),
    }
    if len(payload) > payload_limit:
        body["payload_truncated"] = True
        body["payload_size"] = len(payload)
        body["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    if customer_id is not None:
        body["customer_id"] = customer_id
    if event_id is not None:
        body["event_id"] = event_id
    if key is not None:
        body["key_b64"] = base64.b64encode(key[: max(key_limit, 0)]).decode("ascii")
        body["key_size"] = len(key)
        body["key_sha256"] = hashlib.sha256(key).hexdigest()
    return body
