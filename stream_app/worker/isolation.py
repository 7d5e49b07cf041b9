"""One customer's failure kept to that customer, one message's to that message.

What fails for a reason retrying cannot cure must not hold up the partition (a batch
retried forever stops every partition the worker owns, then the next owner's). So:

* a record that cannot be used (it does not decode: ``corrupt_state``; its key holds
  another Redis type: ``store_rejected``) and any failure while folding a customer's
  events (``internal_error``) leave that customer's record **untouched**: its events of
  the batch are dead-lettered with the reason, nothing of it is published or written, and
  the rest of the batch goes on. Its later events meet the same record and go the same
  way, until an operator repairs or deletes it and re-drives them
  (``engagement-scorer redrive``);
* every dead letter is sized to fit the broker's limit (:mod:`stream_app.worker.deadletter`).
"""

from __future__ import annotations

import logging
from typing import Protocol

from scoring import Event
from stream_app.messages import OutMessage, Record
from stream_app.store.records import CustomerRecord
from stream_app.worker.deadletter import Source, dead_letter_record
from stream_app.worker.errors import CorruptState, describe
from stream_app.worker.fold import Fold


class Folds(Protocol):
    """What isolation needs of the batch processor."""

    def fold(
        self,
        customer_id: str,
        *,
        stored: CustomerRecord,
        events: list[tuple[Record, Event]],
        now_ms: float,
    ) -> Fold: ...

    def mark_of(self, rec: Record) -> tuple[str, int]: ...

    def dead(
        self, rec: Record, reason: str, detail: str, now_ms: float, event: Event | None = None
    ) -> OutMessage: ...


log = logging.getLogger("stream_app.worker.batch")


def fold_isolated(
    processor: Folds,
    customer_id: str,
    *,
    stored: CustomerRecord,
    events: list[tuple[Record, Event]],
    now_ms: float,
) -> Fold:
    """``processor.fold`` of one customer, its failure kept to it (see the module)."""
    fault = stored.fault
    if fault is None:
        try:
            return processor.fold(customer_id, stored=stored, events=events, now_ms=now_ms)
        except CorruptState as exc:
            fault = ("corrupt_state", str(exc))
        except Exception as exc:
            log.exception("scoring customer %r failed; dead-lettering its events", customer_id)
            fault = ("internal_error", describe(exc))
    return reject(processor, customer_id, stored, events, fault, now_ms=now_ms)


def reject(
    processor: Folds,
    customer_id: str,
    stored: CustomerRecord,
    events: list[tuple[Record, Event]],
    fault: tuple[str, str],
    *,
    now_ms: float,
) -> Fold:
    """A customer's outcome when it cannot be scored: nothing to publish or write, its
    events dead-lettered (those its marks do not show as applied already)."""
    reason, detail = fault
    fold = Fold(None, [], [], dead_reason=reason)
    marks = stored.marks
    for rec, event in events:
        src, offset = processor.mark_of(rec)
        if offset <= marks.get(src, -1):
            fold.redelivered += 1
            continue
        fold.dead.append(processor.dead(rec, reason, detail, now_ms, event))
    log.warning(
        "customer %r: %s (%s); its events are dead-lettered, its record left as it is",
        customer_id,
        reason,
        detail,
    )
    return fold


def dead_message(
    rec: Record,
    reason: str,
    detail: str,
    *,
    dlq: str,
    now_ms: float,
    max_bytes: int,
    event: Event | None = None,
) -> OutMessage:
    """The dead letter of ``rec`` on topic ``dlq``, within ``max_bytes``."""
    src = Source(rec.topic, rec.partition, rec.offset, rec.key, rec.value)
    key, value = dead_letter_record(
        src,
        reason,
        detail,
        now_ms=now_ms,
        max_bytes=max_bytes,
        customer_id=event.customer_id if event is not None else None,
        event_id=event.event_id if event is not None else None,
    )
    return OutMessage(dlq, key, value)
