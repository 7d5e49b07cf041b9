"""One batch of input messages → scored state, published changes, dead letters.

The order of effects is what makes the delivery guarantees hold:

1. parse every message; what cannot be scored becomes a dead letter, a message
   on the wrong input partition is forwarded to the by-customer topic;
2. read the batch's customers from Redis (one ``MGET``) and fold their events
   through :func:`scoring.apply` (pure);
3. publish dead letters, forwards and segment changes, and wait for the
   broker's acknowledgements;
4. in one pipeline: count NPS responses (idempotent per source offset), update
   the read-side indexes and the due index, then write each customer's record
   fenced by its version;
5. only then does the caller ack the messages, so faust may commit them.

A crash anywhere before 5 redelivers the batch: the per-customer source marks
make re-applied messages no-ops, and re-published changes carry the same ids.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from scoring import (
    Change,
    CustomerState,
    Event,
    InvalidEvent,
    Model,
    apply,
    decode_explanation,
    decode_state,
    encode_explanation,
    encode_state,
    explain_add,
    fingerprint,
    next_crossing,
    parse_event,
    quiet_until,
)
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage, Record, Topics, expected_partition
from stream_app.store.records import Command, CustomerRecord, Membership, Write, nps_fields
from stream_app.worker.deadletter import MAX_KEY_BYTES
from stream_app.worker.duehints import DueHints
from stream_app.worker.effects import Effects, Outcome, change_messages
from stream_app.worker.errors import CorruptState, describe
from stream_app.worker.isolation import dead_message, fold_isolated
from stream_app.worker.ports import Indexes, NpsCounts, Publisher, RecordStore
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import BatchStats, StageTimer

log = logging.getLogger(__name__)

#: How often a batch retries customers whose fenced write lost a race.
MAX_CONFLICT_ROUNDS = 5


class WriteConflicts(StreamAppError):
    """Fenced writes kept losing races (another worker writes the same customers)."""

    retry_cause = "conflict"  # (a rebalance: retrying cures it)


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


@dataclass(slots=True)
class Fold:
    """One customer's outcome within a batch."""

    write: Write | None
    changes: list[Change]
    nps: list[tuple[str, int, int, str]]  # topic, partition, offset, counter field
    state: CustomerState | None = None
    stored: CustomerState | None = None  # the state as read (its standing: only if needed)
    dead: list[OutMessage] = field(default_factory=list)  # events that broke ``apply``
    dead_reason: str = "internal_error"  # (or why the whole customer was dead-lettered)
    applied: int = 0
    duplicate: int = 0
    capped: int = 0
    redelivered: int = 0
    suspect: int = 0  # redelivered by offset, with an event id not among the recent ones


class BatchProcessor:
    """Scores batches; every effect goes through ``store`` and ``publisher``.

    ``hints`` and ``progress`` are shared with the decay sweep when the worker hands
    them in (:class:`stream_app.worker.scorer.Scorer`); by default the processor has
    its own.
    """

    def __init__(
        self,
        *,
        model: Model,
        topics: Topics,
        store: RecordStore,
        publisher: Publisher,
        readstore: Indexes | None = None,
        explain_events: int = 10,
        dedup_memory: int = 16,
        max_future_ms: int = 300_000,
        due_horizon_ms: float = 86_400_000.0,
        max_age_ms: int | None = None,
        max_message_bytes: int = 1_000_000,
        clock: Callable[[], float] = time.time,
        hints: DueHints | None = None,
        progress: PartitionProgress | None = None,
    ) -> None:
        self.model = model
        self.topics = topics
        self.store = store
        self.explain_events = explain_events
        self.dedup_memory = dedup_memory
        self.max_future_ms = max_future_ms
        #: How far ahead a due entry may be a proven bound instead of the exact crossing.
        self.due_horizon_ms = due_horizon_ms
        #: Events older than this (ms before the processing clock) are dead-lettered.
        self.max_age_ms = max_age_ms
        #: The largest message the broker takes: every dead letter fits in it.
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.due_hints = DueHints() if hints is None else hints
        self.progress = PartitionProgress(topics) if progress is None else progress
        self.readside = ReadSide(model, readstore)
        self.effects = Effects(store, publisher, self.due_hints)
        self._source_ids: dict[tuple[str, int], str] = {}

    def owner(self, customer_id: str) -> int:
        """The partition number that owns a customer (in both source topics)."""
        return expected_partition(customer_id, self.topics.input_partitions)

    def source_id(self, topic: str, partition: int) -> str:
        """Short name of a source partition in a customer's marks."""
        name = self._source_ids.get((topic, partition))
        if name is None:
            name = f"{'i' if topic == self.topics.input else 'r'}{partition}"
            self._source_ids[topic, partition] = name
        return name

    async def process(self, records: Sequence[Record]) -> BatchStats:
        """Score one batch end to end (steps 1-4 of the module docstring)."""
        stats = BatchStats(consumed=len(records))
        timer = StageTimer(stats.seconds)
        now_ms = self.clock() * 1000.0
        parsed = self._parse(records, now_ms=now_ms)
        stats.dead.update(parsed.dead)
        stats.forwarded = parsed.forwarded
        messages = parsed.messages
        pending = parsed.events
        written: list[Fold] = []  # the folds whose writes won, over all rounds
        for round_ in range(MAX_CONFLICT_ROUNDS):
            timer.lap("score")
            stored = await self.store.load(list(pending))
            timer.lap("read")
            folds = {
                cid: fold_isolated(self, cid, stored=stored[cid], events=evs, now_ms=now_ms)
                for cid, evs in pending.items()
            }
            changes: list[Change] = []
            for fold in folds.values():
                _count(stats, fold)
                messages.extend(fold.dead)
                changes.extend(fold.changes)
            messages.extend(change_messages(self.topics.output, changes))
            outcome = Outcome(
                messages,
                [f.write for f in folds.values() if f.write is not None],
                nps=self._nps(folds.values()),
                index=self._index(folds, force=round_ > 0, now_ms=now_ms),
            )
            timer.lap("score")
            lost = await self.effects.apply(outcome, timer.lap)
            written.extend(f for cid, f in folds.items() if cid not in lost)
            if not lost:
                self.progress.advance(parsed.offsets, self._event_times(written))
                if stats.suspect_redelivered:
                    log.warning(
                        "skipped %d message(s) as already applied (offset at or below the "
                        "customer's mark) whose event ids are not among the customers' recent "
                        "ones: a redelivery older than the dedup memory, or, if this goes on, "
                        "new events dropped because the source offsets were reset (topic "
                        "recreated, broker lost its log): see docs/guarantees.md",
                        stats.suspect_redelivered,
                    )
                return stats
            stats.conflicts += len(lost)
            log.warning("fenced writes lost for %d customers; re-reading them", len(lost))
            pending = {cid: parsed.events[cid] for cid in lost}
            messages = []
        raise WriteConflicts(f"fenced writes kept losing for {len(pending)} customers")

    def _parse(self, records: Sequence[Record], *, now_ms: float) -> Parsed:
        """Step 1: the batch's events by customer, dead letters and forwards."""
        parsed = Parsed(defaultdict(list), {}, [], Counter(), 0)
        offsets, out = parsed.offsets, parsed.messages
        for rec in records:
            tp = (rec.topic, rec.partition)
            offsets[tp] = max(rec.offset, offsets.get(tp, -1))
            try:
                if rec.key is not None and len(rec.key) > MAX_KEY_BYTES:
                    raise _Refused(
                        "key_too_large",
                        f"message key is {len(rec.key)} bytes, the limit is {MAX_KEY_BYTES}",
                    )
                if rec.value is None:  # a tombstone: retrying it forever would stall the batch
                    raise InvalidEvent("not_json", "message has no value (a tombstone)")
                event = parse_event(
                    rec.value,
                    self.model,
                    now_ms=int(now_ms),
                    max_future_ms=self.max_future_ms,
                    max_age_ms=self.max_age_ms,
                )
            except (InvalidEvent, _Refused) as exc:
                out.append(self.dead(rec, exc.reason, exc.detail, now_ms))
                parsed.dead[exc.reason] += 1
                continue
            except Exception as exc:  # a message that breaks the parser is a poison pill too
                log.exception("parsing failed for the message at %s:%d", rec.topic, rec.offset)
                out.append(self.dead(rec, "internal_error", describe(exc), now_ms))
                parsed.dead["internal_error"] += 1
                continue
            if rec.topic == self.topics.input and rec.partition != expected_partition(
                event.customer_id, self.topics.input_partitions
            ):
                out.append(
                    OutMessage(self.topics.by_customer, event.customer_id.encode(), rec.value)
                )
                parsed.forwarded += 1
                continue
            parsed.events[event.customer_id].append((rec, event))
        return parsed

    def fold(
        self,
        customer_id: str,
        *,
        stored: CustomerRecord,
        events: list[tuple[Record, Event]],
        now_ms: float,
    ) -> Fold:
        """Step 2, for one customer: its events through :func:`scoring.apply`.

        Raises :class:`CorruptState` when the stored record does not decode, and whatever
        else fails for this customer: :func:`stream_app.worker.isolation.fold_isolated`
        keeps that to the customer.
        """
        try:
            state: CustomerState | None = (
                decode_state(stored.state, self.model) if stored.state is not None else None
            )
            expl = (
                decode_explanation(stored.explain, self.model)
                if stored.explain is not None
                else None
            )
        except Exception as exc:  # (whatever the decoder says: unreadable)
            raise CorruptState(f"the stored state does not decode: {describe(exc)}") from exc
        fold = Fold(None, [], [], stored=state)
        marks = dict(stored.marks)
        touched = False
        # no crossing of the stored state before this, if this worker wrote that record
        quiet_before = self.due_hints.quiet_before(customer_id, stored.fence)
        for rec, event in events:
            src = self.source_id(rec.topic, rec.partition)
            if rec.offset <= marks.get(src, -1):
                fold.redelivered += 1
                if state is not None and fingerprint(event.event_id) not in state.recent_ids:
                    fold.suspect += 1
                continue
            marks[src] = rec.offset
            touched = True
            try:
                result = apply(
                    state,
                    event,
                    self.model,
                    dedup_memory=self.dedup_memory,
                    quiet_before_ms=quiet_before,
                )
                quiet_before = None  # (it was about the stored state)
            except Exception as exc:
                log.exception("scoring failed for event %r", event.event_id)
                fold.dead.append(self.dead(rec, "internal_error", describe(exc), now_ms, event))
                continue
            state = result.state
            fold.changes.extend(result.changes)
            if result.status == "duplicate":
                fold.duplicate += 1
                continue
            if result.status == "applied":
                fold.applied += 1
            else:
                fold.capped += 1
            if self.explain_events:
                points = self.model.event_types[event.type].points
                points = points if result.status == "applied" else 0.0
                expl = explain_add(expl, event, points, self.model, keep=self.explain_events)
            if result.nps is not None:
                for fld in nps_fields(result.nps.day, result.nps.tier, result.nps.category):
                    fold.nps.append((rec.topic, rec.partition, rec.offset, fld))
        fold.state = state
        if touched and state is not None:
            fold.write = Write(
                customer_id,
                stored.version,
                marks,
                encode_state(state),
                due_partition=self.owner(customer_id),
                due_at_ms=self.due_at(customer_id, state),
                explain=encode_explanation(expl, self.model) if expl is not None else None,
                tier_move=self.readside.tier_move(fold.stored, state),
                read_token=stored.fence,
            )
        return fold

    def due_at(self, customer_id: str, state: CustomerState) -> float | None:
        """A lower bound of the state's next crossing for the due index (None: never).

        The answer written last for the customer (or "never", if none is known here)
        when the state is provably quiet until then; else the end of the horizon
        (``due_horizon_ms`` after the state's clock) when it is provably quiet until
        then: the sweep finds the exact crossing when that entry comes due, once, where
        the search would otherwise run at every write of an active customer; else the
        exact next crossing.
        """
        hint = self.due_hints.get(customer_id)
        if hint is None:  # not known here: most customers never cross, and that is cheap to show
            hint = math.inf
        model, clock = self.model, state.clock_ms
        if hint > clock and quiet_until(state, model, hint):  # (at the clock: no use)
            return None if hint == math.inf else hint
        horizon = clock + self.due_horizon_ms
        # (a hint after the clock but within the horizon failed: so would the horizon)
        useful = horizon > clock and not clock < hint <= horizon
        if useful and quiet_until(state, model, horizon):
            return horizon
        return next_crossing(state, model)

    @staticmethod
    def _event_times(folds: Iterable[Fold]) -> dict[int, float]:
        """The largest event time written per owner partition (event-time progress)."""
        times: dict[int, float] = {}
        for fold in folds:
            if fold.state is not None and fold.write is not None:
                owner = fold.write.due_partition
                last = fold.state.last_event_ms
                if last is not None and last > times.get(owner, -math.inf):
                    times[owner] = last
        return times

    def _index(self, folds: Mapping[str, Fold], *, force: bool, now_ms: float) -> list[Command]:
        """Index commands for new customers and those whose standing changed."""
        readside = self.readside
        if not readside.enabled:
            return []
        members: dict[str, Membership] = {}
        previous: dict[str, Membership | None] = {}
        for cid, f in folds.items():
            is_new = f.write is not None and f.write.read_version == 0
            if f.state is None or not (f.changes or force or is_new):
                continue
            members[cid] = readside.membership(f.state)
            if not force:  # the diff is deterministic, so a replay writes it again
                previous[cid] = None if f.stored is None else readside.membership(f.stored)
        changes = [c for f in folds.values() for c in f.changes]
        return readside.commands(members, changes, now_ms, previous=previous)

    @staticmethod
    def _nps(folds: Iterable[Fold]) -> NpsCounts:
        counts: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
        for fold in folds:
            for topic, partition, offset, fld in fold.nps:
                counts[(topic, partition)].append((offset, fld))
        return counts

    def dead(
        self, rec: Record, reason: str, detail: str, now_ms: float, event: Event | None = None
    ) -> OutMessage:
        """The dead letter of ``rec`` (always within the broker's message limit)."""
        return dead_message(
            rec, reason, detail, dlq=self.topics.dlq, now_ms=now_ms,
            max_bytes=self.max_message_bytes, event=event,
        )  # fmt: skip

    async def dead_letter(self, failed: Sequence[tuple[Record, str]], reason: str) -> None:
        """Publish the dead letters of ``failed`` (record, detail) with ``reason``."""
        now_ms = self.clock() * 1000.0
        await self.effects.publisher.publish(
            [self.dead(rec, reason, detail, now_ms) for rec, detail in failed]
        )


def _count(stats: BatchStats, fold: Fold) -> None:
    """Add one customer's fold to the batch's counts."""
    stats.applied += fold.applied
    stats.duplicate += fold.duplicate
    stats.capped += fold.capped
    stats.redelivered += fold.redelivered
    stats.suspect_redelivered += fold.suspect
    if fold.dead:
        stats.dead[fold.dead_reason] += len(fold.dead)
    for change in fold.changes:
        stats.changes[change.cloudevent_type] += 1


class _Refused(StreamAppError):
    """A message refused before parsing (like :class:`scoring.InvalidEvent`, worker reasons)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
