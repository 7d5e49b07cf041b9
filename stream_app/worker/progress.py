"""How far this worker got on each owner partition: offsets processed, event time applied.

A customer's owner partition ``p`` is read from two source topics, the input and the
by-customer topic (partition ``p`` of both). For each ``p`` this worker owns it keeps:

- the **last offset processed** on each of the two source partitions, advanced once a
  batch's effects are durable (:meth:`PartitionProgress.advance`);
- the **event time**: the largest event time applied to a customer of ``p``;
- whether ``p`` is **caught up**: both source partitions processed up to the
  consumer's highwater (:meth:`PartitionProgress.caught_up`).

How far the decay sweep of ``p`` may fire is decided on top of this, with the
watermarks read from the by-customer topic (:mod:`stream_app.worker.watermarks`).
``/readyz`` and ``/metrics`` compute the lag with the same :meth:`next_offset` rule.

It is kept in memory, per process, and dropped for partitions moved away in a
rebalance (:meth:`PartitionProgress.revoke`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from stream_app.messages import Topics
from stream_app.worker.ports import Consumer


class PartitionProgress:
    """Offsets processed and event time applied, per owner partition.

    >>> progress = PartitionProgress(Topics("in", "in.by-customer", "out", "dlq", 2))
    >>> progress.advance({("in", 0): 41}, {0: 1_000.0})
    >>> progress.event_time(0), progress.next_offset("in", 0, committed=None)
    (1000.0, 42)
    >>> progress.advance({("in", 0): 40}, {0: 900.0})   # never backwards
    >>> progress.event_time(0), progress.last_offset("in", 0)
    (1000.0, 41)
    """

    __slots__ = ("_event_time", "_offsets", "_sources")

    def __init__(self, topics: Topics) -> None:
        self._sources = topics.sources
        self._offsets: dict[tuple[str, int], int] = {}
        self._event_time: dict[int, float] = {}

    # ------------------------------------------------------------------ updates

    def advance(
        self, offsets: Mapping[tuple[str, int], int], event_times: Mapping[int, float]
    ) -> None:
        """Record a batch whose effects are durable: the last offset it held per source
        partition, and the largest event time it applied per owner partition."""
        for tp, offset in offsets.items():
            if offset > self._offsets.get(tp, -1):
                self._offsets[tp] = offset
        for partition, ms in event_times.items():
            if ms > self._event_time.get(partition, -math.inf):
                self._event_time[partition] = ms

    def revoke(self, partitions: Iterable[int]) -> None:
        """Drop what is known of owner partitions this worker no longer owns."""
        for p in partitions:
            self._event_time.pop(p, None)
            for topic in self._sources:
                self._offsets.pop((topic, p), None)

    # ------------------------------------------------------------------ queries

    def event_time(self, partition: int) -> float | None:
        """The largest event time applied on ``partition`` (None: none yet)."""
        return self._event_time.get(partition)

    def event_times(self) -> dict[int, float]:
        """Every owner partition's event time (a copy)."""
        return dict(self._event_time)

    def last_offset(self, topic: str, partition: int) -> int | None:
        """The last offset processed on a source partition (None: none yet)."""
        return self._offsets.get((topic, partition))

    def next_offset(self, topic: str, partition: int, committed: int | None) -> int:
        """The next offset this worker will process on a source partition.

        One past the last offset processed; before the first batch since the partition
        was assigned, the group's ``committed`` offset (0 when there is none). Not the
        consumer's position: that one runs ahead, over messages fetched but not
        processed yet.
        """
        done = self._offsets.get((topic, partition))
        return done + 1 if done is not None else committed or 0

    def lag(self, topic: str, partition: int, consumer: Consumer) -> int | None:
        """Messages left on a source partition (None: its highwater is not known)."""
        high = consumer.highwater(topic, partition)
        if high is None:
            return None
        nxt = self.next_offset(topic, partition, consumer.committed(topic, partition))
        return max(0, high - nxt)

    def caught_up(self, partition: int, consumer: Consumer) -> bool:
        """True when both source partitions of ``partition`` have nothing left."""
        return all(self.lag(topic, partition, consumer) == 0 for topic in self._sources)
