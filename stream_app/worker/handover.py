"""The worker's own messages for merges, on the by-customer topic.

* **Hand-over** (header ``engagement-control: merge``): the record of a customer merged
  away, sent by the partition that retired it to the survivor's partition, keyed by the
  survivor. A JSON object ``{"engagement.customer.handover": {...}}`` with the request
  id, both ids, the number of alias hops taken so far, the state and the explanation in
  base64 (its key holds :data:`scoring.lifecycle.MARKER`, so that one scan of a batch's
  bytes finds requests and hand-overs alike).
* **Alias forward** (header ``engagement-alias``): an event of a merged-away customer,
  copied byte for byte, keyed by the customer it now belongs to.

Both carry ``<source>:<offset>``, where they were sent from: the source partition
(``i<p>`` input, ``r<p>`` by-customer) and the offset of the message being processed
when they were. The survivor's record keeps the highest offset applied per such source
(mark ``a<source>``), so the copies a crash makes the sender send again change nothing,
like any redelivery (a sender sends them in offset order).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from stream_app import jsonutil
from stream_app.errors import StreamAppError
from stream_app.messages import Headers, Record, Topics
from stream_app.worker.watermarks import CONTROL_HEADER

MERGE = b"merge"
#: The hand-over's one key.
HANDOVER_KEY = "engagement.customer.handover"
#: The header of an alias forward, and of a hand-over: ``<source>:<offset>`` it came from.
ALIAS_HEADER = "engagement-alias"


class HandoverError(StreamAppError, ValueError):
    """A hand-over message whose value cannot be read."""


@dataclass(frozen=True, slots=True)
class Handover:
    """A merged-away customer's record on its way to the survivor."""

    request_id: str
    source: str
    into: str
    state: bytes
    explain: bytes | None = None
    hops: int = 0


def encode_handover(h: Handover) -> bytes:
    """The value of a hand-over message.

    >>> decode_handover(encode_handover(Handover("r1", "a", "b", b"\\x03xy", None, 1)))
    Handover(request_id='r1', source='a', into='b', state=b'\\x03xy', explain=None, hops=1)
    """
    doc = {
        "request_id": h.request_id,
        "from": h.source,
        "into": h.into,
        "hops": h.hops,
        "state": base64.b64encode(h.state).decode("ascii"),
        "explain": None if h.explain is None else base64.b64encode(h.explain).decode("ascii"),
    }
    return jsonutil.dumps({HANDOVER_KEY: doc})


def decode_handover(value: bytes | None) -> Handover:
    """Read :func:`encode_handover`'s bytes back (:class:`HandoverError` if they are not)."""
    try:
        doc = jsonutil.loads(value or b"")[HANDOVER_KEY]
        explain = doc["explain"]
        return Handover(
            str(doc["request_id"]),
            str(doc["from"]),
            str(doc["into"]),
            base64.b64decode(doc["state"], validate=True),
            None if explain is None else base64.b64decode(explain, validate=True),
            int(doc["hops"]),
        )
    except (jsonutil.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise HandoverError(f"not a hand-over: {type(exc).__name__}") from None


def source_name(rec: Record, topics: Topics) -> str:
    """The name of the source partition ``rec`` was read from: ``i<p>`` (input) or
    ``r<p>`` (by-customer), as in a customer's source marks."""
    return f"{'i' if rec.topic == topics.input else 'r'}{rec.partition}"


def handover_headers(source: str, offset: int) -> Headers:
    """The headers of a hand-over sent while processing ``source`` at ``offset``."""
    return ((CONTROL_HEADER, MERGE), (ALIAS_HEADER, f"{source}:{offset}".encode()))


def alias_headers(source: str, offset: int) -> Headers:
    """The headers of an alias forward sent while processing ``source`` at ``offset``."""
    return ((ALIAS_HEADER, f"{source}:{offset}".encode()),)


def is_handover(headers: Headers) -> bool:
    """True for a hand-over message's headers.

    >>> is_handover(handover_headers("i1", 5)), is_handover(alias_headers("i1", 5))
    (True, False)
    """
    return any(k == CONTROL_HEADER and v == MERGE for k, v in headers)


def alias_mark(headers: Headers) -> tuple[str, int] | None:
    """The mark (``a<source>``) and offset an alias forward or hand-over is checked
    against; None for any other message.

    >>> alias_mark(alias_headers("r2", 41)), alias_mark(())
    (('ar2', 41), None)
    """
    for k, v in headers:
        if k == ALIAS_HEADER:
            source, _, offset = v.decode("ascii", "replace").rpartition(":")
            if source and offset.isdigit():
                return f"a{source}", int(offset)
    return None


def rerouted_to(rec: Record) -> str | None:
    """The customer an alias forward's event now belongs to (its key); None for any
    other message."""
    if rec.key is None or not rec.headers or alias_mark(rec.headers) is None:
        return None
    if is_handover(rec.headers):
        return None
    return rec.key.decode("utf-8", "replace")
