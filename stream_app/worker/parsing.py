"""Step 1 of a batch: its messages sorted into events by customer, dead letters, forwards.

* what cannot be scored becomes a dead letter with its reason (a key over the limit, a
  tombstone, an event :func:`scoring.parse_event` refuses, a message that breaks it);
* watermark control records on the by-customer topic are taken out
  (:mod:`stream_app.worker.watermarks`): they are no events;
* an input message that goes through the by-customer topic (the forwarding rule,
  :func:`stream_app.messages.forwards`) is forwarded with its input partition and
  offset in its headers, so the owner's ``f<p>`` mark skips the copies a crash sends
  again;
* an event sent on along a merged-away customer's alias is scored for the survivor.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from scoring import Event, InvalidEvent, Model, parse_event
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage, Record, Topics, forwards
from stream_app.worker.deadletter import MAX_KEY_BYTES
from stream_app.worker.errors import describe
from stream_app.worker.handover import rerouted_to
from stream_app.worker.watermarks import BatchProgress, is_control, source_headers

log = logging.getLogger("stream_app.worker.batch")

#: The dead letter of a record: (record, reason, detail, now in ms) -> message.
DeadLetter = Callable[[Record, str, str, float], OutMessage]


@dataclass(slots=True)
class Parsed:
    """Step 1's result: the batch's events by customer, what goes elsewhere at once."""

    events: dict[str, list[tuple[Record, Event]]]
    #: The last offset of the batch per source (topic, partition).
    offsets: dict[tuple[str, int], int]
    #: Dead letters and forwards, in input order.
    messages: list[OutMessage]
    dead: Counter[str]
    forwarded: int
    #: Input event times, forwarded shares and watermarks read (applied once durable).
    seen: BatchProgress = field(default_factory=BatchProgress)


class Refused(StreamAppError):
    """A message refused before parsing (like :class:`scoring.InvalidEvent`, worker reasons)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_batch(
    records: Sequence[Record],
    *,
    model: Model,
    topics: Topics,
    now_ms: float,
    max_future_ms: int,
    max_age_ms: int | None,
    dead: DeadLetter,
) -> Parsed:
    """Step 1 (see the module docstring)."""
    parsed = Parsed(defaultdict(list), {}, [], Counter(), 0)
    offsets, out, events = parsed.offsets, parsed.messages, parsed.events
    seen = parsed.seen
    input_topic, by_customer_topic = topics.input, topics.by_customer
    now = int(now_ms)  # (the same for every message of the batch)
    for rec in records:
        topic = rec.topic
        tp = (topic, rec.partition)
        if rec.offset >= offsets.get(tp, -1):  # (the largest offset per source)
            offsets[tp] = rec.offset
        if rec.headers and topic == by_customer_topic and is_control(rec.headers):
            seen.control(rec.partition, rec.offset, rec.value)  # not an event
            continue
        try:
            if rec.key is not None and len(rec.key) > MAX_KEY_BYTES:
                raise Refused(
                    "key_too_large",
                    f"message key is {len(rec.key)} bytes, the limit is {MAX_KEY_BYTES}",
                )
            if rec.value is None:  # a tombstone: retrying it forever would stall the batch
                raise InvalidEvent("not_json", "message has no value (a tombstone)")
            event = parse_event(
                rec.value,
                model,
                now_ms=now,
                max_future_ms=max_future_ms,
                max_age_ms=max_age_ms,
            )
        except (InvalidEvent, Refused) as exc:
            out.append(dead(rec, exc.reason, exc.detail, now_ms))
            parsed.dead[exc.reason] += 1
            continue
        except Exception as exc:  # a message that breaks the parser is a poison pill too
            log.exception("parsing failed for the message at %s:%d", rec.topic, rec.offset)
            out.append(dead(rec, "internal_error", describe(exc), now_ms))
            parsed.dead["internal_error"] += 1
            continue
        if topic == input_topic:
            forward = forwards(rec, event.customer_id, topics)
            seen.event(rec.partition, event.ts_ms, forwarded=forward)
            if forward:
                origin = source_headers(rec.partition, rec.offset)
                key = event.customer_id.encode()
                out.append(OutMessage(topics.by_customer, key, rec.value, origin))
                parsed.forwarded += 1
                continue
        elif rec.headers and (into := rerouted_to(rec)) is not None:
            event = replace(event, customer_id=into)  # merged into ``into``
        events[event.customer_id].append((rec, event))
    return parsed
