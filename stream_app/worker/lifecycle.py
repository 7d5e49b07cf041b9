"""Erase and merge requests inside the batch, in order with the customers' events.

A request (:mod:`scoring.lifecycle`) or a hand-over (:mod:`stream_app.worker.handover`)
cuts the batch: the messages before it are processed as a batch, then it alone, then
the rest, so it meets its customer's events in partition order. Batches without one
(almost all) take no extra step.

* **Erase** X, on X's partition: publish ``engagement.customer.erased``, then suppress
  X's keyed hash, take X out of every segment set and the due index, delete its record
  fenced (the tier counts lose it), and erase the customers merged into X too.
* **Merge** X into Y, on X's partition: publish the hand-over of X's record to Y's
  partition, X's exits from its tier and segments (cause ``merge``) and
  ``engagement.customer.merged``, then take X out of the indexes and
  delete its record fenced, leaving an alias X -> Y. Refused (logged and counted) when
  X was erased, when Y is erased, or when Y's aliases lead back to X.
* **Hand-over** to Y, on Y's partition: Y's state plus X's (:func:`scoring.merge.merge`),
  its changes (cause ``merge``) published, Y written fenced with the hand-over's source
  mark, so a copy sent again changes nothing. A Y merged away passes it on along its
  alias; a Y erased drops it (and erases X's alias).

Events of a customer with no record go through :meth:`Lifecycle.divert`: those of an
erased customer are dropped (counted, never dead-lettered: they hold personal data), those
of a merged-away one are sent on to the survivor (an alias forward).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from scoring import (
    Change,
    Event,
    InvalidEvent,
    Model,
    decode_state,
)
from scoring.lifecycle import MARKER, Request, lifecycle_event, parse_request
from scoring.merge import departure
from stream_app import jsonutil
from stream_app.contracts import lifecycle_cloudevent
from stream_app.errors import StreamAppError
from stream_app.messages import (
    CLOUDEVENT_HEADERS,
    OutMessage,
    Record,
    Topics,
    expected_partition,
    forwards,
)
from stream_app.store.records import CustomerRecord
from stream_app.worker.duehints import DueHints
from stream_app.worker.effects import Effects, change_messages
from stream_app.worker.handover import (
    Handover,
    alias_headers,
    encode_handover,
    handover_headers,
    is_handover,
    source_name,
)
from stream_app.worker.isolation import dead_message
from stream_app.worker.ports import LifecycleStore, Publisher, RecordStore
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import BatchStats
from stream_app.worker.survivor import Survivor, SurvivorOptions
from stream_app.worker.watermarks import source_headers

log = logging.getLogger("stream_app.worker.lifecycle")

#: Rounds of a request whose fenced delete or write keeps losing before the batch fails.
MAX_ROUNDS = 5
DAY_MS = 86_400_000


class LifecycleConflicts(StreamAppError):
    """A request's fenced delete or write kept losing races."""


@dataclass(frozen=True, slots=True)
class LifecycleOptions:
    """How long erased customers stay suppressed and aliases live; scoring knobs."""

    suppress_ms: int = 30 * DAY_MS
    alias_ms: int = 30 * DAY_MS
    #: Alias hops a hand-over may take before it is applied where it is (a cycle).
    max_hops: int = 8
    explain_events: int = 10
    explain_full_ids: bool = False
    max_future_ms: int = 300_000
    #: The largest message the broker takes: every dead letter fits in it.
    max_message_bytes: int = 1_000_000


class Lifecycle:
    """Requests, hand-overs and the diversion of erased or merged customers' events."""

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
        hints: DueHints,
        progress: PartitionProgress,
        options: LifecycleOptions = LifecycleOptions(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.topics = topics
        self.records = records
        self.store = store
        self.publisher = publisher
        self.effects = effects
        self.readside = readside
        self.hints = hints
        self.progress = progress
        self.options = options
        self.clock = clock
        self.survivor = Survivor(
            model=model,
            topics=topics,
            records=records,
            store=store,
            publisher=publisher,
            effects=effects,
            readside=readside,
            options=SurvivorOptions(
                options.suppress_ms,
                options.max_hops,
                options.explain_events,
                options.explain_full_ids,
            ),
        )

    # ----------------------------------------------------------------- the batch

    def is_request(self, rec: Record) -> bool:
        """A cheap test: ``rec`` may be a request or a hand-over (a batch boundary)."""
        return rec.value is not None and MARKER in rec.value

    @staticmethod
    def any_request(records: Sequence[Record]) -> bool:
        """Whether a batch may hold a request or a hand-over: one scan of its bytes."""
        return MARKER in b"\n".join([r.value for r in records if r.value is not None])

    async def process(
        self,
        records: Sequence[Record],
        events: Callable[[Sequence[Record]], Awaitable[BatchStats]],
    ) -> BatchStats:
        """Process a batch holding requests: the runs of other messages through
        ``events`` (the batch processor), each request on its own, in order."""
        stats, run = BatchStats(), list[Record]()
        for rec in records:
            if not self.is_request(rec):
                run.append(rec)
                continue
            if run:
                stats.add(await events(run))
                run = []
            done = await self.handle(rec)
            stats.add(done if done is not None else await events([rec]))
        if run:
            stats.add(await events(run))
        return stats

    async def divert(
        self,
        stored: Mapping[str, CustomerRecord],
        pending: dict[str, list[tuple[Record, Event]]],
        stats: BatchStats,
    ) -> list[OutMessage]:
        """Take the events of erased and merged-away customers out of ``pending``: the
        first are dropped, the second become alias forwards (returned)."""
        # (a record that does not decode is no erased customer: isolation deals with it)
        unknown = [cid for cid in pending if stored[cid].state is None and not stored[cid].fault]
        if not unknown:
            return []
        out: list[OutMessage] = []
        for cid, status in (await self.store.lookup(unknown)).items():
            events = pending.pop(cid)
            if status.kind == "suppressed":
                stats.suppressed += len(events)
                continue
            assert status.into is not None
            for rec, _ in events:
                out.append(self._alias_forward(rec, status.into))
            stats.aliased += len(events)
        return out

    def _alias_forward(self, rec: Record, into: str) -> OutMessage:
        value = rec.value if rec.value is not None else b""
        headers = alias_headers(source_name(rec, self.topics), rec.offset)
        return OutMessage(self.topics.by_customer, into.encode(), value, headers)

    # ----------------------------------------------------------------- one request

    async def handle(self, rec: Record) -> BatchStats | None:
        """Process one request or hand-over; None when ``rec`` is neither after all."""
        stats = BatchStats(consumed=1)
        now_ms = self.clock() * 1000.0
        if rec.topic == self.topics.by_customer and is_handover(rec.headers):
            broken = await self.survivor.take(rec, stats, now_ms)
            if broken is not None:
                await self._dead(rec, *broken, now_ms, stats)
        else:
            try:
                request = parse_request(
                    rec.value or b"", now_ms=int(now_ms), max_future_ms=self.options.max_future_ms
                )
            except InvalidEvent as exc:
                await self._dead(rec, exc.reason, exc.detail, now_ms, stats)
                request = None
            else:
                if request is None:
                    return None
            if request is not None:
                if rec.topic == self.topics.input and forwards(rec, request.customer_id,
                                                               self.topics):  # fmt: skip
                    headers = source_headers(rec.partition, rec.offset)
                    key = request.customer_id.encode()
                    await self.publisher.publish(
                        [OutMessage(self.topics.by_customer, key, rec.value or b"", headers)]
                    )
                    stats.forwarded += 1
                elif request.kind == "erase":
                    await self._erase(request, stats, now_ms)
                else:
                    await self._merge(rec, request, stats, now_ms)
        self.progress.advance({(rec.topic, rec.partition): rec.offset}, {})
        return stats

    async def _dead(
        self, rec: Record, reason: str, detail: str, now_ms: float, stats: BatchStats
    ) -> None:
        message = dead_message(
            rec, reason, detail, dlq=self.topics.dlq, now_ms=now_ms,
            max_bytes=self.options.max_message_bytes,
        )  # fmt: skip
        await self.publisher.publish([message])
        stats.dead[reason] += 1

    def _announce(self, request: Request) -> OutMessage:
        event = lifecycle_event(request, self.model)
        return OutMessage(
            self.topics.output,
            request.customer_id.encode(),
            jsonutil.dumps(lifecycle_cloudevent(event)),
            CLOUDEVENT_HEADERS,
        )

    def _tier(self, record: CustomerRecord) -> str:
        """The tier the tier counts hold the record under ("": none)."""
        if record.state is None or not self.readside.enabled:
            return ""
        return decode_state(record.state, self.model).tier_name(self.model)

    def _owner(self, customer_id: str) -> int:
        return expected_partition(customer_id, self.topics.input_partitions)

    async def _erase(self, request: Request, stats: BatchStats, now_ms: float) -> None:
        cid, suppress_ms = request.customer_id, self.options.suppress_ms
        announce = self._announce(request)
        for _ in range(MAX_ROUNDS):
            record = (await self.records.load([cid]))[cid]
            await self.publisher.publish([announce])
            merged = await self.store.erase(
                # (a record that cannot be read is erased all the same, whatever it holds)
                cid, fence="*" if record.fault else record.fence, tier=self._tier(record),
                partition=self._owner(cid),
                suppress_ms=suppress_ms, now_ms=now_ms,
            )  # fmt: skip
            if merged is None:
                stats.conflicts += 1
                continue
            await self.store.drop_aliases(cid, merged, suppress_ms=suppress_ms)
            self.hints.discard(cid)
            stats.lifecycle["erase"] += 1
            stats.changes[announce_type("erased")] += 1
            return
        raise LifecycleConflicts(f"erasing a customer kept losing races ({MAX_ROUNDS} rounds)")

    async def _merge(self, rec: Record, request: Request, stats: BatchStats, now_ms: float) -> None:
        source, into = request.customer_id, request.into
        assert into is not None
        for _ in range(MAX_ROUNDS):
            record = (await self.records.load([source]))[source]
            if record.fault is not None:  # nothing to hand over: the record stays as it is
                reason, detail = record.fault
                log.warning("merge request %r refused: %s (%s)", request.request_id, reason, detail)
                stats.lifecycle["merge_refused:" + reason] += 1
                return
            if record.state is None:
                status = (await self.store.lookup([source])).get(source)
                if status is not None:  # erased, or merged already (a redelivery)
                    stats.lifecycle["merge_skipped:" + status.kind] += 1
                    return
            refused = await self._refused(source, into)
            if refused:
                log.warning("merge request %r refused: %s", request.request_id, refused)
                stats.lifecycle["merge_refused:" + refused] += 1
                return
            messages, exits = self._departure(rec, request, record)
            await self.publisher.publish(messages)
            moves = self.readside.commands({}, exits, now_ms)  # (the tier left, for /v1/tiers)
            if moves:
                await self.records.commit([], index=moves)
            done = await self.store.retire(
                source, fence=record.fence, tier=self._tier(record),
                partition=self._owner(source), into=into, alias_ms=self.options.alias_ms,
                now_ms=now_ms,
            )  # fmt: skip
            if not done:
                stats.conflicts += 1
                continue
            self.hints.discard(source)
            stats.lifecycle["merge"] += 1
            stats.changes.update(c.cloudevent_type for c in exits)
            stats.changes[announce_type("merged")] += 1
            return
        raise LifecycleConflicts(f"a merge kept losing races ({MAX_ROUNDS} rounds)")

    def _departure(
        self, rec: Record, request: Request, record: CustomerRecord
    ) -> tuple[list[OutMessage], tuple[Change, ...]]:
        """What a merge publishes before it retires ``request.customer_id``: the hand-over
        of its record to the survivor's partition, its exits from its tier and segments
        (cause ``merge``), then the announcement. All of it depends only on the request
        and the record, so a request carried out again publishes the same messages."""
        source, into = request.customer_id, request.into
        assert into is not None
        if record.state is None:
            return [self._announce(request)], ()
        handover = Handover(request.request_id, source, into, record.state, record.explain)
        headers = handover_headers(source_name(rec, self.topics), rec.offset)
        exits = departure(
            decode_state(record.state, self.model), self.model,
            customer_id=source, request_id=request.request_id,
        )  # fmt: skip
        messages = [
            OutMessage(self.topics.by_customer, into.encode(), encode_handover(handover), headers),
            *change_messages(self.topics.output, exits),
            self._announce(request),
        ]
        return messages, exits

    async def _refused(self, source: str, into: str) -> str:
        """Why merging ``source`` into ``into`` is refused ("" if it is not)."""
        if await self.store.is_suppressed(source):
            return "erased"
        target, seen = into, {source}
        for _ in range(self.options.max_hops):
            if target in seen:
                return "cycle"
            seen.add(target)
            nxt = await self.store.alias(target)
            if nxt is None:
                break
            target = nxt
        if await self.store.is_suppressed(target):
            return "target_erased"
        return ""


def announce_type(kind: str) -> str:
    """The CloudEvent type of a lifecycle announcement (``erased`` or ``merged``)."""
    return f"engagement.customer.{kind}"
