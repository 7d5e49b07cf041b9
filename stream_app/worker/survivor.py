"""A hand-over reaching the survivor's partition: the merge itself.

The survivor's state plus the merged-away customer's (:func:`scoring.merge.merge`),
its changes (cause ``merge``) published, then the survivor written fenced with the
hand-over's source mark (``a<source>``), so a copy the sender sent again after a crash
changes nothing. A survivor with no record may have been merged away itself (the
hand-over is passed on along its alias, at most ``max_hops`` times, then applied where
it is) or erased (the hand-over is dropped and the merged-away customer's alias to it
erased too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from scoring import (
    CustomerState,
    Explanation,
    InvalidState,
    Model,
    decode_explanation,
    decode_state,
    encode_explanation,
    encode_state,
    next_crossing,
)
from scoring.merge import merge, merge_explanations
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage, Record, Topics, expected_partition
from stream_app.store.records import CustomerRecord, Write
from stream_app.worker.effects import Effects, Outcome, change_messages
from stream_app.worker.handover import (
    Handover,
    HandoverError,
    alias_mark,
    decode_handover,
    encode_handover,
    handover_headers,
    source_name,
)
from stream_app.worker.ports import LifecycleStore, Publisher, RecordStore
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import BatchStats

log = logging.getLogger("stream_app.worker.lifecycle")

#: Rounds of a hand-over whose fenced write keeps losing before the batch fails.
MAX_ROUNDS = 5


class HandoverConflicts(StreamAppError):
    """A hand-over's fenced write kept losing races."""


@dataclass(frozen=True, slots=True)
class SurvivorOptions:
    """How long a dropped hand-over's customer stays suppressed, alias hops, explanations."""

    suppress_ms: int
    max_hops: int = 8
    explain_events: int = 10
    explain_full_ids: bool = False


class Survivor:
    """Applies hand-overs to survivors."""

    def __init__(
        self,
        *,
        model: Model,
        topics: Topics,
        records: RecordStore,
        store: LifecycleStore,
        publisher: Publisher,
        effects: Effects,
        readside: ReadSide,
        options: SurvivorOptions,
    ) -> None:
        self.model = model
        self.topics = topics
        self.records = records
        self.store = store
        self.publisher = publisher
        self.effects = effects
        self.readside = readside
        self.options = options

    async def take(self, rec: Record, stats: BatchStats, now_ms: float) -> tuple[str, str] | None:
        """Apply the hand-over ``rec``; None when done, else (reason, detail) of why it
        cannot be applied (the caller dead-letters it): it does not read
        (``internal_error``), or the survivor's record cannot be used (its fault)."""
        mark = alias_mark(rec.headers)
        try:
            h = decode_handover(rec.value)
            source = decode_state(h.state, self.model)
            source_expl = None if h.explain is None else decode_explanation(h.explain, self.model)
        except (HandoverError, InvalidState) as exc:
            return "internal_error", f"{type(exc).__name__}: {exc}"
        if mark is None:
            return "internal_error", "a hand-over without its source"
        into = rec.key.decode() if rec.key else h.into
        for _ in range(MAX_ROUNDS):
            record = (await self.records.load([into]))[into]
            if record.fault is not None:  # (left as it is, like the survivor's own events)
                return record.fault
            if record.state is None and await self._elsewhere(rec, h, into, stats):
                return None
            name, offset = mark
            if offset <= record.marks.get(name, -1):
                stats.redelivered += 1
                return None
            current = None if record.state is None else decode_state(record.state, self.model)
            outcome, changes = self._outcome(
                into=into, record=record, current=current, source=source,
                source_expl=source_expl, h=h, mark=(name, offset), now_ms=now_ms,
            )  # fmt: skip
            if await self.effects.apply(outcome):
                stats.conflicts += 1
                continue
            stats.lifecycle["merge_in"] += 1
            stats.changes.update(changes)
            return None
        raise HandoverConflicts(f"a hand-over kept losing races ({MAX_ROUNDS} rounds)")

    def _outcome(
        self,
        *,
        into: str,
        record: CustomerRecord,
        current: CustomerState | None,
        source: CustomerState,
        source_expl: Explanation | None,
        h: Handover,
        mark: tuple[str, int],
        now_ms: float,
    ) -> tuple[Outcome, list[str]]:
        """The merge's effects: its changes, the survivor's index entries and write."""
        merged = merge(current, source, self.model, customer_id=into, request_id=h.request_id)
        write = Write(
            into,
            record.version,
            {**record.marks, mark[0]: mark[1]},
            encode_state(merged.state),
            due_partition=expected_partition(into, self.topics.input_partitions),
            due_at_ms=next_crossing(merged.state, self.model),
            explain=self._explain(record, source_expl),
            tier_move=self.readside.tier_move(current, merged.state),
            read_token=record.fence,
        )
        before = None if current is None else self.readside.membership(current)
        index = self.readside.commands(
            {into: self.readside.membership(merged.state)},
            merged.changes,
            now_ms,
            previous={into: before},
        )
        messages = change_messages(self.topics.output, merged.changes)
        types = [c.cloudevent_type for c in merged.changes]
        return Outcome(messages, [write], index=index), types

    async def _elsewhere(self, rec: Record, h: Handover, into: str, stats: BatchStats) -> bool:
        """For a survivor with no record: True when the hand-over is dealt with here
        (dropped: the survivor was erased; passed on: it was merged away itself)."""
        status = (await self.store.lookup([into])).get(into)
        if status is None:
            return False
        if status.kind == "suppressed":
            await self.store.forget_merged(h.source, into, suppress_ms=self.options.suppress_ms)
            stats.lifecycle["merge_in_dropped:erased"] += 1
            return True
        if h.hops >= self.options.max_hops or status.into is None:
            log.warning("hand-over %r: %d alias hops, applied here", h.request_id, h.hops)
            return False
        onward = Handover(h.request_id, h.source, status.into, h.state, h.explain, h.hops + 1)
        message = OutMessage(
            self.topics.by_customer,
            status.into.encode(),
            encode_handover(onward),
            handover_headers(source_name(rec, self.topics), rec.offset),
        )
        await self.publisher.publish([message])
        stats.lifecycle["merge_in_passed_on"] += 1
        return True

    def _explain(self, record: CustomerRecord, theirs: Explanation | None) -> bytes | None:
        """Both explanations merged (none when explanations are off)."""
        keep = self.options.explain_events
        if not keep:
            return None
        mine = None if record.explain is None else decode_explanation(record.explain, self.model)
        both = merge_explanations(mine, theirs, self.model, keep=keep)
        if both is None:
            return None
        return encode_explanation(both, self.model, fingerprints=not self.options.explain_full_ids)
