"""One batch of input messages → scored state, published changes, dead letters.

The order of effects is what makes the delivery guarantees hold:

1. parse every message (:mod:`stream_app.worker.parsing`): what cannot be scored
   becomes a dead letter, a message on the wrong input partition (or not keyed by its
   customer) is forwarded to the by-customer topic; watermark control records are
   taken out (:mod:`stream_app.worker.watermarks`);
2. read the batch's customers from Redis (one ``MGET``) and fold their events
   through :func:`scoring.apply` (pure);
3. publish dead letters, forwards and segment changes, and wait for the
   broker's acknowledgements;
4. in one pipeline: count NPS responses (idempotent per source offset), update
   the read-side indexes and the due index, then write each customer's record
   fenced by the token of the record read;
5. only then does the caller ack the messages, so faust may commit them.

A crash anywhere before 5 redelivers the batch: the per-customer source marks
make re-applied messages no-ops, and re-published changes carry the same ids.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

from scoring import (
    Change,
    CustomerState,
    Event,
    Model,
    apply,
    decode_explanation,
    decode_state,
    encode_explanation,
    encode_state,
    explain_add,
    fingerprint,
    next_crossing,
    quiet_until,
)
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage, Record, Topics, expected_partition
from stream_app.store.records import Command, CustomerRecord, Membership, Write, nps_fields
from stream_app.worker.duehints import DueHints
from stream_app.worker.effects import Effects, Outcome, change_messages
from stream_app.worker.errors import CorruptState, describe
from stream_app.worker.fold import Fold
from stream_app.worker.handover import alias_mark
from stream_app.worker.isolation import dead_message, fold_isolated
from stream_app.worker.lifecycle import Lifecycle
from stream_app.worker.parsing import parse_batch
from stream_app.worker.ports import Indexes, NpsCounts, Publisher, RecordStore
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import BatchStats, StageTimer
from stream_app.worker.watermarks import Watermarks, forwarded_from

log = logging.getLogger(__name__)

#: How often a batch retries customers whose fenced write lost a race.
MAX_CONFLICT_ROUNDS = 5


class WriteConflicts(StreamAppError):
    """Fenced writes kept losing races (another worker writes the same customers)."""

    retry_cause = "conflict"  # (a rebalance: retrying cures it)


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
        explain_full_ids: bool = False,
        dedup_memory: int = 16,
        max_future_ms: int = 300_000,
        due_horizon_ms: float = 86_400_000.0,
        max_age_ms: int | None = None,
        max_message_bytes: int = 1_000_000,
        clock: Callable[[], float] = time.time,
        hints: DueHints | None = None,
        progress: PartitionProgress | None = None,
        watermarks: Watermarks | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.model = model
        self.topics = topics
        self.store = store
        self.explain_events = explain_events
        #: Explained events keep their ids as sent (else their fingerprints: format 4).
        self.explain_full_ids = explain_full_ids
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
        self.watermarks = Watermarks(topics, self.progress) if watermarks is None else watermarks
        self.readside = ReadSide(model, readstore)
        self.effects = Effects(store, publisher, self.due_hints)
        self._source_ids: dict[tuple[str, int], str] = {}
        #: Erase and merge requests, and the events of erased or merged-away customers.
        self.lifecycle = lifecycle

    def owner(self, customer_id: str) -> int:
        """The partition number that owns a customer (in both source topics)."""
        return expected_partition(customer_id, self.topics.input_partitions)

    def mark_of(self, rec: Record) -> tuple[str, int]:
        """The source mark a message is checked against, and its offset there: for a
        forwarded message, its input partition and offset (``f<p>``), so that the copies
        a crash makes the forwarder send again are skipped like any redelivery."""
        if rec.headers and rec.topic == self.topics.by_customer:
            origin = forwarded_from(rec.headers)
            if origin is not None:
                return f"f{origin[0]}", origin[1]
            aliased = alias_mark(rec.headers)  # an event of a customer merged into this one
            if aliased is not None:
                return aliased
        name = self._source_ids.get((rec.topic, rec.partition))  # (per event: no call)
        if name is None:
            name = self.source_id(rec.topic, rec.partition)
        return name, rec.offset

    def source_id(self, topic: str, partition: int) -> str:
        """Short name of a source partition in a customer's marks."""
        name = self._source_ids.get((topic, partition))
        if name is None:
            name = f"{'i' if topic == self.topics.input else 'r'}{partition}"
            self._source_ids[topic, partition] = name
        return name

    async def process(self, records: Sequence[Record]) -> BatchStats:
        """Score one batch end to end (steps 1-4 of the module docstring); erase and
        merge requests cut it (:meth:`stream_app.worker.lifecycle.Lifecycle.process`)."""
        lifecycle = self.lifecycle
        if lifecycle is not None and lifecycle.any_request(records):
            return await lifecycle.process(records, self._process)
        return await self._process(records)

    async def _process(self, records: Sequence[Record]) -> BatchStats:
        stats = BatchStats(consumed=len(records))
        timer = StageTimer(stats.seconds)
        now_ms = self.clock() * 1000.0
        parsed = parse_batch(
            records, model=self.model, topics=self.topics, now_ms=now_ms,
            max_future_ms=self.max_future_ms, max_age_ms=self.max_age_ms, dead=self.dead,
        )  # fmt: skip
        stats.dead.update(parsed.dead)
        stats.forwarded = parsed.forwarded
        stats.control = parsed.seen.controls
        stats.consumed -= stats.control
        messages = parsed.messages
        pending = parsed.events
        written: list[Fold] = []  # the folds whose writes won, over all rounds
        for round_ in range(MAX_CONFLICT_ROUNDS):
            timer.lap("score")
            stored = await self.store.load(list(pending))
            if self.lifecycle is not None:  # erased customers' events go, merged ones' move on
                messages.extend(await self.lifecycle.divert(stored, pending, stats))
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
                self.watermarks.commit(parsed.seen)
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
        # (looked up once per customer, not per event)
        model, dedup, keep = self.model, self.dedup_memory, self.explain_events
        mark_of, changes = self.mark_of, fold.changes
        for rec, event in events:
            src, offset = mark_of(rec)
            if offset <= marks.get(src, -1):
                fold.redelivered += 1
                if state is not None and fingerprint(event.event_id) not in state.recent_ids:
                    fold.suspect += 1
                continue
            marks[src] = offset
            touched = True
            try:
                result = apply(
                    state, event, model, dedup_memory=dedup, quiet_before_ms=quiet_before
                )
                quiet_before = None  # (it was about the stored state)
            except Exception as exc:
                log.exception("scoring failed for event %r", event.event_id)
                fold.dead.append(self.dead(rec, "internal_error", describe(exc), now_ms, event))
                continue
            state = result.state
            changes.extend(result.changes)
            status = result.status
            if status == "duplicate":
                fold.duplicate += 1
                continue
            if status == "applied":
                fold.applied += 1
            else:
                fold.capped += 1
            if keep:
                points = model.event_types[event.type].points if status == "applied" else 0.0
                expl = explain_add(expl, event, points, model, keep=keep)
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
                explain=None
                if expl is None
                else encode_explanation(expl, self.model, fingerprints=not self.explain_full_ids),
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
