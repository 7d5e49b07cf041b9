"""The worker's live objects (Redis store, model, batch processor) and retry policy."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis.exceptions
from aiokafka.errors import KafkaError

from scoring import Model, load_model
from stream_app.aioutil import raise_if_cancelled
from stream_app.http.metrics import WorkerMetrics
from stream_app.messages import OutMessage, Record, Topics
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.progress import ProgressStore
from stream_app.store.readstore import ReadStore
from stream_app.store.state import StateStore, connect
from stream_app.store.tiercounts import migrate_tier_sets
from stream_app.worker import gc_tuning
from stream_app.worker.batch import BatchProcessor, BatchStats

log = logging.getLogger("stream_app.worker")

#: Failures that are the world's fault, not the batch's: wait and try again.
RETRYABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    KafkaError,
    OSError,
    asyncio.TimeoutError,
)


class FaustPublisher:
    """Publishes through the faust app's producer and waits for every ack."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if not messages:
            return
        producer = self.app.producer
        futures = [
            await producer.send(m.topic, m.key, m.value, m.partition, None, list(m.headers) or None)
            for m in messages
        ]
        await asyncio.gather(*futures)


class Runtime:
    """Lazily built once per worker process, on the first batch."""

    def __init__(self) -> None:
        self._processor: BatchProcessor | None = None
        self._lock = asyncio.Lock()
        #: One batch or one sweep at a time, so the two never race on a customer here.
        self.busy = asyncio.Lock()
        self.input_partitions: int | None = None
        self.readstore: ReadStore | None = None
        self.progress: ProgressStore | None = None
        self.store: StateStore | None = None
        self.metrics = WorkerMetrics()
        self.started_at = time.time()
        self.last_batch_at: float | None = None
        self.max_decay_lag_ms = 0.0
        self._reported: Counter[str] = Counter()

    async def processor(self) -> BatchProcessor:
        if self._processor is None:
            async with self._lock:
                if self._processor is None:
                    self._processor = await self._build()
        return self._processor

    async def _build(self) -> BatchProcessor:
        from stream_app.app import app, settings
        from stream_app.kafka.io import topic_partition_count

        model: Model = load_model(settings.model_path)
        partitions = self.input_partitions or await topic_partition_count(
            settings.broker_list, settings.input_topic
        )
        client = connect(settings.redis_url, name=client_name())
        keys = Keys(settings.key_prefix, model.name)
        store = self.store = StateStore(client, keys)
        self.readstore = ReadStore(client, keys, model)
        self.progress = ProgressStore(client, keys)
        await migrate_tier_sets(client, keys, [t.name for t in model.tiers])
        log.info(
            "scoring with model %s v%d, input partitions %d", model.name, model.version, partitions
        )
        processor = build_processor(settings, model, store, FaustPublisher(app), partitions)
        processor.readstore = self.readstore
        if settings.gc_freeze:
            gc_tuning.freeze()
        return processor

    async def handle(self, events: Sequence[Any]) -> BatchStats:
        """Process a batch of faust events, retrying with backoff until it is done."""
        records = [
            Record(
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.key,
                e.message.value,
                e.message.timestamp,
                headers_of(e.message.headers),
            )
            for e in events
        ]
        from stream_app.app import settings

        self.observe_age(records, time.time())

        delay = 0.05
        while True:
            try:
                processor = await self.processor()
                async with self.busy:
                    began = time.perf_counter()
                    stats = await processor.process(records)
                    self.metrics.batch_seconds.observe(time.perf_counter() - began)
                    self.metrics.batch_size.observe(len(records))
                    self.last_batch_at = time.time()
            except RETRYABLE as exc:
                log.warning(
                    "batch of %d waits %.2fs to retry: %s: %s",
                    len(records),
                    delay,
                    type(exc).__name__,
                    exc,
                )
            except Exception:
                log.exception("batch of %d failed; retrying in %.2fs", len(records), delay)
            else:
                self.record(stats)
                raise_if_cancelled()
                return stats
            raise_if_cancelled()
            await asyncio.sleep(delay)  # back-off, not synchronisation
            delay = min(delay * 2, settings.retry_max_backoff_s)

    def observe_age(self, records: Sequence[Record], now: float) -> None:
        """How old each message is (by its Kafka timestamp) when its batch starts."""
        observe = self.metrics.event_age.observe
        for rec in records:
            if rec.timestamp is not None:
                observe(max(now - rec.timestamp, 0.0))

    def record(self, stats: BatchStats) -> None:
        m = self.metrics
        m.consumed.inc(stats.consumed)
        m.applied.inc(stats.applied)
        m.duplicate.inc(stats.duplicate)
        m.capped.inc(stats.capped)
        m.redelivered.inc(stats.redelivered)
        m.forwarded.inc(stats.forwarded)
        m.conflicts.inc(stats.conflicts)
        for name, n in stats.changes.items():
            m.published.inc(n, type=name)
        for stage, seconds in stats.seconds.items():
            m.stage_seconds.inc(seconds, stage=stage)
        for reason, n in stats.dead.items():
            m.dead.inc(n, reason=reason)
            log.warning("dead-lettered %d message(s): %s", n, reason)

    def forget(self, partitions: set[int]) -> None:
        """Drop event-time progress and offsets of revoked partitions."""
        if self._processor is not None and partitions:
            self._processor.forget(partitions)
            log.info("partitions revoked: %s", sorted(partitions))

    async def sweep(self, app: Any) -> None:
        """Fire due decay crossings on every input partition this worker owns."""
        from stream_app.app import settings
        from stream_app.worker.sweep import sweep_partition

        processor = await self.processor()
        owned = sorted(
            tp.partition for tp in app.consumer.assignment() if tp.topic == settings.input_topic
        )
        limits = await self._watermarks(app, processor, owned)
        for partition in owned:
            now_ms = time.time() * 1000.0
            until = limits[partition]
            if until is None:
                continue
            try:
                async with self.busy:
                    assert self.store is not None  # (built with the processor)
                    stats = await sweep_partition(
                        processor,
                        partition,
                        until,
                        store=self.store,
                        now_ms=now_ms,
                        limit=settings.decay_sweep_limit,
                    )
            except RETRYABLE as exc:
                log.warning("decay sweep of partition %d will retry: %s", partition, exc)
                continue
            self.metrics.decay_fired.inc(stats.fired)
            for name, n in stats.by_type.items():
                self.metrics.published.inc(n, type=name)
            self.metrics.decay_lag.set(stats.max_lag_ms / 1000.0)
            if stats.fired:
                log.debug(
                    "partition %d: fired %d crossing(s), %d change(s), lag %.0f ms",
                    partition,
                    stats.fired,
                    stats.changes,
                    stats.max_lag_ms,
                )
                self.max_decay_lag_ms = max(self.max_decay_lag_ms, stats.max_lag_ms)

    async def _watermarks(
        self, app: Any, processor: BatchProcessor, owned: Sequence[int]
    ) -> dict[int, float | None]:
        """Send and save progress (:func:`propagate.tick`); how far each sweep may go."""
        from stream_app.app import settings
        from stream_app.worker import propagate

        caught_up = {p: is_caught_up(app, processor, settings.input_topic, p) for p in owned}
        if self.progress is None:
            raise RuntimeError("the runtime is not built yet")
        now_ms = time.time() * 1000.0
        limits = await propagate.tick(
            processor.watermarks,
            publisher=processor.publisher,
            store=self.progress,
            by_customer_topic=settings.by_customer_topic,
            owned=owned,
            caught_up=caught_up,
            now_ms=now_ms,
        )
        m, wm = self.metrics, processor.watermarks
        for p, until in limits.items():
            if until is not None and until != math.inf:
                m.watermark.set(until / 1000.0, partition=str(p))
                m.watermark_lag.set(max(0.0, (now_ms - until) / 1000.0), partition=str(p))
            share = wm.forwarded_share(p)
            if share is not None:
                m.forwarded_share.set(share, partition=str(p))
        return limits

    def log_stats(self) -> None:
        counts = self.metrics.counts()
        delta = counts - self._reported
        if self.max_decay_lag_ms:
            log.info(
                "decay sweep: largest firing lag %.0f ms since last report", self.max_decay_lag_ms
            )
            self.max_decay_lag_ms = 0.0
        if delta:
            log.info(
                "since last report: %s", ", ".join(f"{k}={v}" for k, v in sorted(delta.items()))
            )
            self._reported = counts


def is_caught_up(app: Any, processor: BatchProcessor, topic: str, partition: int) -> bool:
    """True when a source partition has nothing left to process: its highwater is known
    and the next offset to process (:func:`next_offset`) has reached it."""
    from faust.types import TP

    high = app.consumer.highwater(TP(topic, partition))
    return high is not None and next_offset(app, processor, topic, partition) >= high


def next_offset(app: Any, processor: BatchProcessor, topic: str, partition: int) -> int:
    """The next offset this worker will process on a source partition.

    One past the last offset ``processor`` processed; before the first batch since the
    partition was assigned, the group's committed offset (faust reads it on assignment; 0
    when there is none). Not the consumer's position: that one runs ahead, over messages
    fetched but not processed yet. The decay sweep's "caught up" and the lag of
    ``/readyz`` and ``/metrics`` both use this one rule.
    """
    from faust.types import TP

    done = processor.offsets.get((topic, partition))
    if done is not None:
        return done + 1
    committed = getattr(app.consumer, "_committed_offset", None)
    if committed is None:
        raise RuntimeError("faust's Consumer no longer keeps _committed_offset; update next_offset")
    return int(committed.get(TP(topic, partition)) or 0)


def headers_of(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """A faust message's headers as (name, value) pairs (faust may give a list or a dict)."""
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((str(k), bytes(v or b"")) for k, v in items)


def client_name() -> str:
    """How a worker's Redis connections are named: ``engagement-scorer:<host>:<pid>``."""
    return f"engagement-scorer:{socket.gethostname()}:{os.getpid()}"


def build_processor(
    settings: Settings, model: Model, store: StateStore, publisher: Any, input_partitions: int
) -> BatchProcessor:
    """The batch processor for these settings."""
    topics = Topics(
        input=settings.input_topic,
        by_customer=settings.by_customer_topic,
        output=settings.output_topic,
        dlq=settings.dlq_topic,
        input_partitions=input_partitions,
    )
    return BatchProcessor(
        model=model,
        topics=topics,
        store=store,
        publisher=publisher,
        dedup_memory=settings.dedup_memory,
        explain_events=settings.explain_events,
        max_future_ms=int(settings.max_future_seconds * 1000),
        due_horizon_ms=settings.due_horizon_seconds * 1000.0,
    )


runtime = Runtime()
