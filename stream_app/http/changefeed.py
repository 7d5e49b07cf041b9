"""The latest segment changes, for the dashboard's live feed (``GET /v1/changes``).

A :class:`ChangeFeed` reads the output topic the way ``engagement-scorer tail`` does: an
aiokafka consumer without a consumer group (it takes no partitions from anyone and
commits nothing), every partition assigned, starting ``keep`` messages before each
partition's end. It keeps the last ``keep`` changes in memory, in the order they arrived.
Each worker builds one at start-up (``cli/start.py``) and hands it to the views; the first
request for the feed starts it as a runtime dependency of the App, so it stops with the
worker, and a worker nobody asks never reads the topic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service, ServiceT

from stream_app import jsonutil
from stream_app.errors import StreamAppError

log = logging.getLogger("stream_app.http.changefeed")

#: Changes kept (and the most ``GET /v1/changes`` returns).
KEEP = 200


def summary(value: bytes, partition: int, offset: int) -> dict[str, Any] | None:
    """What the feed shows of one segment-change CloudEvent (None: not one).

    >>> ce = {"id": "c1", "type": "engagement.tier.changed", "time": "2024-05-01T12:00:00.000Z",
    ...       "data": {"customer_id": "a", "kind": "tier", "segment": "warm", "from": "cold",
    ...                "to": "warm", "score": 21.5, "cause": "event"}}
    >>> summary(jsonutil.dumps(ce), 0, 7)["to"], summary(b"{not json", 0, 8)
    ('warm', None)
    """
    try:
        ce = jsonutil.loads(value)
        data = ce["data"]
        return {
            "id": str(ce["id"]),
            "type": str(ce["type"]),
            "time": str(ce["time"]),
            "customer_id": str(data["customer_id"]),
            "kind": str(data["kind"]),
            "segment": str(data["segment"]),
            "from": data.get("from"),
            "to": data.get("to"),
            "score": float(data["score"]),
            "cause": str(data["cause"]),
            "partition": partition,
            "offset": offset,
        }
    except (jsonutil.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class FeedUnavailable(StreamAppError):
    """The topic cannot be followed (yet)."""


class ChangeFeed(Service):
    """Follows ``topic`` and keeps its latest changes (see the module doc)."""

    def __init__(
        self,
        consumer_factory: Callable[[], AIOKafkaConsumer],
        topic: str,
        *,
        keep: int = KEEP,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.consumer_factory = consumer_factory
        self.topic = topic
        self.keep = keep
        self.changes: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.received = 0
        #: Set once the first read after the start (the latest changes so far) is in.
        self.filled = asyncio.Event()
        self._requested = False

    async def start_under(self, owner: ServiceT) -> None:
        """Start following the topic, as a runtime dependency of ``owner`` (the App: it
        stops the feed when it stops); only the first call starts it."""
        if not self._requested:
            self._requested = True
            await owner.add_runtime_dependency(self)

    async def wait_filled(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the first read; True if it is in."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.filled.wait(), timeout_s)
        return self.filled.is_set()

    def latest(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` changes, newest first."""
        items = list(self.changes)
        items.reverse()
        return items[:limit]

    def add(self, value: bytes, partition: int, offset: int) -> None:
        item = summary(value, partition, offset)
        if item is not None:
            self.changes.append(item)
            self.received += 1

    @Service.task
    async def _follow(self) -> None:
        backoff = 0.5
        while not self.should_stop:
            consumer = self.consumer_factory()
            try:
                await consumer.start()
                await self._assign(consumer)
                backoff = 0.5
                while not self.should_stop:
                    batch = await consumer.getmany(timeout_ms=500, max_records=1000)
                    for tp, messages in batch.items():
                        for m in messages:
                            self.add(m.value, tp.partition, m.offset)
                    self.filled.set()
            except (KafkaError, OSError, FeedUnavailable) as exc:
                log.warning("change feed: %s: %s; retrying in %.1f s", self.topic, exc, backoff)
            finally:
                await consumer.stop()
            await self.sleep(backoff)  # back-off after a broker error
            backoff = min(backoff * 2, 10.0)

    async def _assign(self, consumer: AIOKafkaConsumer) -> None:
        parts = consumer.partitions_for_topic(self.topic)  # (metadata fetched at start)
        if not parts:
            raise FeedUnavailable(f"no partitions for topic {self.topic!r}")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            # (a partition below its retention start reads from its start:
            # auto_offset_reset="earliest")
            consumer.seek(tp, max(0, int(ends[tp]) - self.keep))
