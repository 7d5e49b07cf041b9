"""The decay sweep: fire crossings that come due with no new event.

Every customer write also records the customer's next crossing
(:func:`scoring.next_crossing`) in its owner partition's due index. On each
tick the worker takes, for every partition it owns, the customers due up to
that partition's event-time progress, applies their crossings with
:func:`scoring.advance` (cause ``decay``, at the exact crossing time), publishes
the changes, writes the state (fenced) and reschedules them. Work per tick is
proportional to the customers due, never to all customers.

Event-time progress of a partition is the largest event time applied on it, or
the wall clock while the partition is caught up. So a replay of history fires
exactly the crossings a live run would, with the same change ids (a change id
depends only on the customer, the change and its time). This is a watermark per
partition: it holds as long as each partition carries its events in event-time
order. An event older than its partition's progress (backfilled history behind
live traffic, or a re-keyed message overtaken by keyed ones) may find the
crossings before it already fired, and then applies as a late event.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

from scoring import (
    CustomerState,
    SegmentChange,
    advance,
    decode_state,
    encode_state,
    next_crossing,
)
from stream_app.store.records import Command, Write
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.ports import Store

log = logging.getLogger("stream_app.worker.sweep")


@dataclass
class SweepStats:
    """What one partition's sweep did."""

    due: int = 0
    fired: int = 0
    changes: int = 0
    conflicts: int = 0
    max_lag_ms: float = 0.0
    by_type: Counter[str] = field(default_factory=Counter)


async def sweep_partition(
    processor: BatchProcessor,
    partition: int,
    until_ms: float,
    *,
    store: Store,
    now_ms: float,
    limit: int = 500,
) -> SweepStats:
    """Fire the crossings due on ``partition`` strictly before ``until_ms`` (one round
    trip each way)."""
    model = processor.model
    stats = SweepStats()
    until_ms = math.nextafter(until_ms, -math.inf)  # see the module docstring
    due = await store.due(partition, until_ms, limit)
    if not due:
        return stats
    stats.due = len(due)
    ids = [cid for cid, _ in due]
    stored = await store.load(ids)
    changes: list[SegmentChange] = []
    writes: list[Write] = []
    new_states: list[CustomerState] = []
    schedule: dict[str, tuple[float, float | None]] = {}
    read_at = dict(due)
    for cid in ids:
        record = stored[cid]
        if record.state is None:
            schedule[cid] = (read_at[cid], None)
            continue
        read = decode_state(record.state, model)
        state, fired = advance(read, cid, until_ms, model)
        schedule[cid] = (read_at[cid], next_crossing(state, model))
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
                    tier_move=processor.tier_move(read, state),
                )
            )
            new_states.append(state)
    if changes:
        await processor.publisher.publish([processor.change_message(c) for c in changes])
    index: list[Command] = []
    if processor.readstore is not None:
        members = {
            w.customer_id: processor.membership(st)
            for w, st in zip(writes, new_states, strict=True)
        }
        index = processor.readstore.commands(members, changes, now_ms)
    lost = await store.commit(writes, index=index)
    for cid in lost:  # someone else wrote this customer: leave its entry for the next tick
        schedule.pop(cid, None)
        processor.due_hints.forget(cid)
    await store.reschedule(partition, schedule)
    written = {w.customer_id for w in writes}
    for cid, (_, at) in schedule.items():  # exact, for the record as it now stands
        version = stored[cid].version + (cid in written)
        processor.due_hints.set(cid, at, version)
    stats.fired = len(writes) - len(lost)
    stats.changes = len(changes)
    stats.by_type.update(c.cloudevent_type for c in changes)
    stats.conflicts = len(lost)
    stats.max_lag_ms = max((now_ms - c.occurred_at_ms for c in changes), default=0.0)
    return stats
