"""Dead letters that always fit the broker's message limit.

A dead letter the producer or the broker refuses cannot be published, and a batch whose
publication keeps failing would stall its partition for good. So every dead letter is
sized against ``ENGAGEMENT_MAX_MESSAGE_BYTES`` (the largest record the broker takes):

* the original value is cut to what fits (its size and SHA-256 are recorded);
* the original key becomes the dead letter's own key when it is small; a larger one is
  recorded in the body instead, cut to :data:`KEPT_KEY_BYTES`;
* should the result still be too large (a very small limit), a **minimal** dead letter
  goes out: reason, a short detail and the source topic, partition and offset, where the
  whole message still is.

A message whose key is over :data:`MAX_KEY_BYTES` is not scored at all (``key_too_large``):
no customer id is that long, so the producer is broken.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_app import jsonutil
from stream_app.contracts import MAX_DEAD_PAYLOAD, dead_letter

#: A message key longer than this is dead-lettered as ``key_too_large``.
MAX_KEY_BYTES = 4096
#: A source key up to this size is the dead letter's own key; above, it is kept in the body.
KEPT_KEY_BYTES = 1024
#: Longest detail text kept (the rest is cut with "...").
DETAIL_CHARS = 500
#: Room left for everything but the payload: detail, source, ids, key copy, JSON syntax.
ENVELOPE_BYTES = 8192
#: Room for Kafka's record framing and headers, on top of key and value.
RECORD_OVERHEAD = 512
#: The smallest message limit the worker accepts (a minimal dead letter is well under it).
MIN_MESSAGE_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Source:
    """Where the failed message was consumed, and its bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with "...".

    >>> cut("abcdef", 5)
    'ab...'
    """
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def dead_letter_record(
    src: Source,
    reason: str,
    detail: str,
    *,
    now_ms: float,
    max_bytes: int,
    customer_id: str | None = None,
    event_id: str | None = None,
) -> tuple[bytes | None, bytes]:
    """The dead letter of ``src`` as ``(Kafka key, value)``, together within ``max_bytes``.

    >>> src = Source("in", 0, 7, b"k" * 400_000, b"v" * 600_000)
    >>> key, value = dead_letter_record(src, "too_large", "big", now_ms=0, max_bytes=1_000_000)
    >>> key is None, len(value) < 1_000_000 - RECORD_OVERHEAD
    (True, True)
    >>> key, value = dead_letter_record(src, "too_large", "big", now_ms=0, max_bytes=16_384)
    >>> len(value) + RECORD_OVERHEAD <= 16_384, b'"payload_truncated":true' in value
    (True, True)
    >>> key, value = dead_letter_record(src, "too_large", "big", now_ms=0, max_bytes=2_048)
    >>> b'"payload_b64":""' in value and b'"offset":7' in value and b"key_b64" not in value
    True
    """
    key = src.key
    own_key = key if key is not None and len(key) <= KEPT_KEY_BYTES else None
    body_key = key if key is not None and own_key is None else None
    budget = max_bytes - RECORD_OVERHEAD - ENVELOPE_BYTES - len(own_key or b"")
    limit = min(MAX_DEAD_PAYLOAD, max(0, budget * 3 // 4 - 4))
    body = dead_letter(
        reason=reason,
        detail=cut(detail, DETAIL_CHARS),
        topic=src.topic,
        partition=src.partition,
        offset=src.offset,
        payload=src.value if src.value is not None else b"",
        received_ms=now_ms,
        payload_limit=limit,
        key=body_key,
        key_limit=KEPT_KEY_BYTES,
        customer_id=customer_id,
        event_id=event_id,
    )
    value = jsonutil.dumps(body)
    if len(value) + len(own_key or b"") + RECORD_OVERHEAD <= max_bytes:
        return own_key, value
    minimal = dead_letter(
        reason=reason,
        detail=cut(detail, 200),
        topic=src.topic,
        partition=src.partition,
        offset=src.offset,
        payload=src.value if src.value is not None else b"",
        received_ms=now_ms,
        payload_limit=0,
        customer_id=customer_id,
        event_id=event_id,
    )
    return None, jsonutil.dumps(minimal)
