"""The decay sweep: fire crossings that come due with no new event.

Every customer write also records the customer's next crossing
(:func:`scoring.next_crossing`) in its owner partition's due index. On each
tick the worker takes, for every partition it owns, the customers due up to
that partition's event-time progress, applies their crossings with
:func:`scoring.advance` (cause ``decay``, at the exact crossing time), publishes
the changes, writes the state (fenced) and reschedules them
(:class:`stream_app.worker.effects.Effects`, as a batch). Work per tick is
proportional to the customers due, never to all customers.

How far the sweep of a partition may fire is its event-time progress: the minimum
of the input partition's progress and of the watermarks every input partition sent
through the by-customer partition (:mod:`stream_app.worker.watermarks`). So no
crossing fires while an earlier event of that customer can still be upstream, and a
replay of history fires exactly the crossings a live run would, with the same change
ids (a change id depends only on the customer, the change and its time). It holds as
long as each input partition carries its events in event-time order. An event older
than its partition's progress (backfilled history behind live traffic) may find the
crossings before it already fired, and then applies as a late event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from scoring import (
    Change,
    CustomerState,
    Model,
    advance,
    decode_state,
    encode_state,
    next_crossing,
)
from stream_app.store.records import CustomerRecord, Write
from stream_app.worker.effects import Effects, Outcome, Reschedule, change_messages
from stream_app.worker.errors import CorruptState, describe
from stream_app.worker.ports import DueIndex, RecordStore
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import SweepStats

log = logging.getLogger("stream_app.worker.sweep")

#: A customer whose record cannot be read is left alone and looked at again this much later.
UNREADABLE_RETRY_MS = 3_600_000.0


class DecaySweep:
    """Fires the crossings due on one partition at a time."""

    def __init__(
        self,
        *,
        model: Model,
        output_topic: str,
        store: RecordStore,
        due_index: DueIndex,
        effects: Effects,
        readside: ReadSide,
        limit: int = 500,
    ) -> None:
        self.model = model
        self.output_topic = output_topic
        self.store = store
        self.due_index = due_index
        self.effects = effects
        self.readside = readside
        self.limit = limit

    async def partition(self, partition: int, until_ms: float, *, now_ms: float) -> SweepStats:
        """Fire the crossings due on ``partition`` strictly before ``until_ms`` (one round
        trip each way)."""
        model = self.model
        stats = SweepStats()
        until_ms = math.nextafter(until_ms, -math.inf)  # see the module docstring
        due = await self.due_index.due(partition, until_ms, self.limit)
        if not due:
            return stats
        stats.due = len(due)
        ids = [cid for cid, _ in due]
        stored = await self.store.load(ids)
        changes: list[Change] = []
        writes: list[Write] = []
        members = {}
        entries: dict[str, tuple[float, float | None]] = {}
        versions = {cid: record.fence for cid, record in stored.items()}
        for cid, read_at in due:
            record = stored[cid]
            if record.state is None and record.fault is None:
                entries[cid] = (read_at, None)
                continue
            try:
                read, state, fired, after = _advance(record, cid, until_ms, model)
            except Exception as exc:  # noqa: BLE001 - one customer must not fail the partition
                log.warning(
                    "decay sweep: customer %r left untouched, looked at again in an hour: %s",
                    cid,
                    describe(exc),
                )
                entries[cid] = (read_at, now_ms + UNREADABLE_RETRY_MS)
                stats.skipped += 1
                continue
            entries[cid] = (read_at, after)
            if fired:
                changes.extend(fired)
                # the explanation is part of the record: a crossing leaves it as it was
                writes.append(
                    Write(
                        cid,
                        record.version,
                        record.marks,
                        encode_state(state),
                        explain=record.explain,
                        tier_move=self.readside.tier_move(read, state),
                        read_token=record.fence,
                    )
                )
                versions[cid] = writes[-1].token
                if self.readside.enabled:
                    members[cid] = self.readside.membership(state)
        outcome = Outcome(
            change_messages(self.output_topic, changes),
            writes,
            index=self.readside.commands(members, changes, now_ms),
            reschedule=Reschedule(partition, entries, versions),
        )
        lost = await self.effects.apply(outcome)
        stats.fired = len(writes) - len(lost)
        stats.changes = len(changes)
        stats.by_type.update(c.cloudevent_type for c in changes)
        stats.conflicts = len(lost)
        stats.max_lag_ms = max((now_ms - c.occurred_at_ms for c in changes), default=0.0)
        return stats


def _advance(
    record: CustomerRecord, customer_id: str, until_ms: float, model: Model
) -> tuple[CustomerState, CustomerState, Sequence[Change], float | None]:
    """(state read, state advanced, changes fired, next crossing) of one due customer;
    raises if its record cannot be read, or anything else fails for it (encoding too)."""
    if record.fault is not None:
        raise CorruptState(record.fault[1])
    read = decode_state(record.state or b"", model)
    state, fired = advance(read, customer_id, until_ms, model)
    if fired:
        encode_state(state)  # (fails here, not in the middle of the sweep's writes)
    return read, state, fired, next_crossing(state, model)
