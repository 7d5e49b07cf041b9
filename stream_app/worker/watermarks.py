"""Event-time progress through the by-customer topic: watermarks as control records.

A decay crossing of a customer may fire only once no event of that customer with an
earlier time can still be upstream: on an input partition not read yet, or forwarded
but not yet processed from the by-customer topic. This module keeps what a worker
knows about that, per partition number (docs/architecture.md, "Progress and
watermarks"):

- **Input progress** of input partition p: the largest event time of the valid events
  read from p (scored or forwarded), once the batch that read them is durable; the wall
  clock instead while p is caught up. Every event of p up to it has been processed or
  forwarded (for a partition in event-time order).
- **Watermarks.** The owner of input p writes its progress as a small control record
  (header :data:`CONTROL_HEADER`) to every by-customer partition, after the forwards it
  covers were acknowledged. Read back from by-customer q, the latest watermark of p
  says that every event p forwarded to q up to that time lies before it in q.
- **Upstream progress** of by-customer q: the minimum over the latest watermark of every
  input partition read from q.
- The sweep of partition q fires up to ``min(input progress of q, upstream progress of
  q)`` (:meth:`Watermarks.until`): the wall clock only when every upstream partition
  feeding q is caught up.

Control records are not events: the batch takes them out before parsing, so they never
reach the scoring core, the dead-letter topic or the output. Their value is a JSON
object without an event's fields, so a worker that does not know the header
dead-letters them (``missing_field``) instead of scoring them.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from stream_app import jsonutil
from stream_app.errors import StreamAppError
from stream_app.messages import OutMessage, Topics
from stream_app.store.progress import StoredProgress
from stream_app.worker.ports import Consumer
from stream_app.worker.progress import PartitionProgress

log = logging.getLogger("stream_app.worker.watermarks")

#: The Kafka header that marks a control record (value :data:`WATERMARK`).
CONTROL_HEADER = "engagement-control"
WATERMARK = b"watermark"
CONTROL_HEADERS: tuple[tuple[str, bytes], ...] = ((CONTROL_HEADER, WATERMARK),)

#: The header of a forwarded message: ``<input partition>:<input offset>`` it came from.
SOURCE_HEADER = "engagement-source"

#: Valid input events read on a partition before its forwarded share may be warned about.
WARN_AFTER = 100
#: The forwarded share above which a partition's producers get a warning (once).
WARN_SHARE = 0.5


class ControlRecordError(StreamAppError, ValueError):
    """A record marked as a control record whose value cannot be read."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """Input partition ``source`` has processed (or forwarded) every event up to
    ``progress_ms``; ``offset`` is the last input offset processed there (-1: none)."""

    source: int
    progress_ms: float
    offset: int = -1


def encode_watermark(mark: Watermark) -> bytes:
    """A control record's value.

    >>> encode_watermark(Watermark(3, 1000.5, 41))
    b'{"watermark":{"source":3,"progress_ms":1000.5,"offset":41}}'
    """
    doc = {"source": mark.source, "progress_ms": mark.progress_ms, "offset": mark.offset}
    return jsonutil.dumps({"watermark": doc})


def decode_watermark(value: bytes | None) -> Watermark:
    """Read :func:`encode_watermark`'s bytes back.

    >>> decode_watermark(encode_watermark(Watermark(3, 1000.5, 41)))
    Watermark(source=3, progress_ms=1000.5, offset=41)
    >>> decode_watermark(b"{}")
    Traceback (most recent call last):
    ...
    stream_app.worker.watermarks.ControlRecordError: not a watermark: b'{}'
    """
    try:
        doc = jsonutil.loads(value or b"")["watermark"]
        source, progress, offset = doc["source"], doc["progress_ms"], doc["offset"]
        ok = type(source) is int and type(offset) is int and source >= 0
        if ok and isinstance(progress, int | float) and math.isfinite(progress):
            return Watermark(source, float(progress), offset)
    except (jsonutil.JSONDecodeError, KeyError, TypeError):
        pass
    raise ControlRecordError(f"not a watermark: {value[:200] if value else value!r}")


def is_control(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> bool:
    """True when a record's headers mark it as a watermark control record.

    >>> is_control(CONTROL_HEADERS), is_control([("content-type", b"x")]), is_control(None)
    (True, False, False)
    """
    if not headers:
        return False
    items = headers.items() if isinstance(headers, Mapping) else headers
    return any(k == CONTROL_HEADER and v == WATERMARK for k, v in items)


def source_headers(partition: int, offset: int) -> tuple[tuple[str, bytes], ...]:
    """The headers of a message forwarded from input ``partition`` at ``offset``."""
    return ((SOURCE_HEADER, f"{partition}:{offset}".encode()),)


def forwarded_from(headers: Iterable[tuple[str, bytes]]) -> tuple[int, int] | None:
    """The input (partition, offset) a forwarded message came from (None: not said).

    >>> forwarded_from(source_headers(2, 41)), forwarded_from([("x", b"1")])
    ((2, 41), None)
    """
    for k, v in headers:
        if k == SOURCE_HEADER:
            partition, _, offset = v.partition(b":")
            if partition.isdigit() and offset.isdigit():
                return int(partition), int(offset)
    return None


@dataclass
class BatchProgress:
    """What one batch saw of progress; applied by :meth:`Watermarks.commit` once durable."""

    #: Largest event time of the valid events read per input partition.
    input_time: dict[int, float] = field(default_factory=dict)
    read: Counter[int] = field(default_factory=Counter)
    forwarded: Counter[int] = field(default_factory=Counter)
    #: (by-customer partition, offset, watermark) of each control record, in order.
    marks: list[tuple[int, int, Watermark]] = field(default_factory=list)
    controls: int = 0  # control records read, broken ones included

    def event(self, partition: int, ts_ms: float, *, forwarded: bool) -> None:
        """A valid event read from input ``partition``."""
        if ts_ms > self.input_time.get(partition, -math.inf):
            self.input_time[partition] = ts_ms
        self.read[partition] += 1
        if forwarded:
            self.forwarded[partition] += 1

    def control(self, partition: int, offset: int, value: bytes | None) -> None:
        """A control record read from by-customer ``partition``; a broken one is logged."""
        self.controls += 1
        try:
            self.marks.append((partition, offset, decode_watermark(value)))
        except ControlRecordError as exc:
            log.warning("by-customer partition %d offset %d: skipped: %s", partition, offset, exc)


class Watermarks:
    """A worker's knowledge of event-time progress, per partition number, on top of its
    :class:`~stream_app.worker.progress.PartitionProgress` (offsets processed, lag)."""

    def __init__(self, topics: Topics, progress: PartitionProgress) -> None:
        self.topics = topics
        self.partitions = topics.input_partitions
        self._progress = progress
        self.input_time: dict[int, float] = {}
        #: by-customer q -> input p -> latest watermark of p read from q.
        self.upstream: dict[int, dict[int, float]] = {}
        self.read: Counter[int] = Counter()
        self.forwarded: Counter[int] = Counter()
        self.warned: set[int] = set()
        #: Partitions whose durable progress was merged in since they were assigned.
        self.loaded: set[int] = set()
        #: What was last emitted (control records) and saved (Redis), per partition.
        self.emitted: dict[int, float] = {}
        self.saved: dict[int, StoredProgress] = {}

    def commit(self, seen: BatchProgress) -> None:
        """Take in a batch's progress, once its effects are durable."""
        for p, ts in seen.input_time.items():
            if ts > self.input_time.get(p, -math.inf):
                self.input_time[p] = ts
        for q, _, mark in seen.marks:
            self._upstream(q, mark.source, mark.progress_ms)
        self.read.update(seen.read)
        self.forwarded.update(seen.forwarded)
        for p in seen.read:
            self._warn(p)

    def _upstream(self, q: int, p: int, progress_ms: float) -> None:
        marks = self.upstream.setdefault(q, {})
        if progress_ms > marks.get(p, -math.inf):
            marks[p] = progress_ms

    def _warn(self, p: int) -> None:
        share = self.forwarded_share(p)
        if p in self.warned or share is None or self.read[p] < WARN_AFTER or share < WARN_SHARE:
            return
        self.warned.add(p)
        log.warning(
            "input partition %d: %.0f %% of %d events were not on their customer's partition "
            "(or not keyed by customer_id) and took the extra hop through %s. Producers that "
            "key events by customer_id with Java's murmur2 partitioner avoid it: the Java "
            "client's default; librdkafka-based clients (confluent-kafka, node-rdkafka, "
            "Go, .NET) need partitioner=murmur2_random",
            p,
            100.0 * share,
            self.read[p],
            self.topics.by_customer,
        )

    def forwarded_share(self, p: int) -> float | None:
        """Share of the valid events read from input ``p`` that were forwarded."""
        n = self.read[p]
        return self.forwarded[p] / n if n else None

    def input_caught_up(self, p: int, consumer: Consumer) -> bool:
        """True when input ``p`` has nothing left to process."""
        return self._progress.lag(self.topics.input, p, consumer) == 0

    def input_progress(self, p: int, now_ms: float, *, caught_up: bool) -> float | None:
        """Event-time progress of input ``p``: the wall clock while it is caught up."""
        known = self.input_time.get(p)
        if caught_up:
            return now_ms if known is None else max(known, now_ms)
        return known

    def upstream_progress(self, q: int) -> float | None:
        """Minimum over every input partition's latest watermark read from by-customer
        ``q`` (None while one is missing); no limit with a single partition."""
        if self.partitions == 1:
            return math.inf
        marks = self.upstream.get(q, {})
        if len(marks) < self.partitions:
            return None
        return min(marks.values())

    def until(self, q: int, input_progress: float | None) -> float | None:
        """How far the decay sweep of partition ``q`` may fire (None: not yet known)."""
        upstream = self.upstream_progress(q)
        if input_progress is None or upstream is None:
            return None
        return min(input_progress, upstream)

    def to_emit(self, progress: Mapping[int, float]) -> list[Watermark]:
        """The watermarks of owned input partitions whose progress moved since last sent
        (none with a single partition: nothing is forwarded)."""
        if self.partitions == 1:
            return []
        last = self._progress.last_offset
        return [
            Watermark(p, at, _offset(last(self.topics.input, p)))
            for p, at in sorted(progress.items())
            if at > self.emitted.get(p, -math.inf)
        ]

    def messages(self, marks: Iterable[Watermark]) -> list[OutMessage]:
        """Each watermark as a control record to every by-customer partition."""
        topic = self.topics.by_customer
        return [
            OutMessage(topic, None, encode_watermark(m), CONTROL_HEADERS, q)
            for m in marks
            for q in range(self.partitions)
        ]

    def sent(self, marks: Iterable[Watermark]) -> None:
        for mark in marks:
            self.emitted[mark.source] = mark.progress_ms

    def snapshot(self, q: int) -> StoredProgress:
        """What to keep durably for partition ``q``: only progress already justified,
        with the offsets processed that justify it.

        The input progress kept is the event time read, never the wall clock of a
        caught-up partition: that one holds only while the partition stays caught up (see
        :meth:`input_progress`). Kept, it would let a successor that finds a backlog (a
        restart, a rebalance) fire crossings ahead of the backlog's events, which the
        worker before it, reading the same messages, would not have done; a successor
        that is caught up uses the wall clock of its own anyway."""
        last = self._progress.last_offset
        return StoredProgress(
            self.input_time.get(q),
            _offset(last(self.topics.input, q)),
            dict(self.upstream.get(q, {})),
            _offset(last(self.topics.by_customer, q)),
        )

    def merge(self, q: int, stored: StoredProgress) -> None:
        """Take in durable progress of partition ``q`` (a new owner, a restart). Its
        offsets stay in Redis: this worker goes on from the group's committed offsets."""
        if stored.input_ms is not None and stored.input_ms > self.input_time.get(q, -math.inf):
            self.input_time[q] = stored.input_ms
        for p, at in stored.upstream.items():
            self._upstream(q, p, at)
        self.loaded.add(q)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is known of partitions this worker no longer owns."""
        for p in partitions:
            self.input_time.pop(p, None)
            self.upstream.pop(p, None)
            self.emitted.pop(p, None)
            self.saved.pop(p, None)
            self.loaded.discard(p)


def _offset(offset: int | None) -> int:
    return -1 if offset is None else offset
