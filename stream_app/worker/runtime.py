"""The worker's live objects (Redis store, model, batch processor) and retry policy."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from scoring import Model, load_model
from stream_app.http.metrics import WorkerMetrics
from stream_app.messages import OutMessage, Record, Topics
from stream_app.settings import Settings
from stream_app.store.keys import Keys
from stream_app.store.readstore import ReadStore
from stream_app.store.state import StateStore, connect
from stream_app.store.tiercounts import migrate_tier_sets
from stream_app.worker import gc_tuning
from stream_app.worker.batch import BatchProcessor, BatchStats
from stream_app.worker.errors import describe, transient_cause
from stream_app.worker.retry import Liveness, RetryPolicy, until_done

log = logging.getLogger("stream_app.worker")


class FaustPublisher:
    """Publishes through the faust app's producer and waits for every ack."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        if not messages:
            return
        producer = self.app.producer
        futures = [
            await producer.send(m.topic, m.key, m.value, None, None, list(m.headers) or None)
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
        self.store: StateStore | None = None
        self.metrics = WorkerMetrics()
        self.started_at = time.time()
        self.last_batch_at: float | None = None
        self.liveness = Liveness(last_progress=time.monotonic())
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
        """Process a batch of faust events until it is done (:mod:`stream_app.worker.retry`:
        transient failures retried with jittered backoff, anything else isolated)."""
        records = [
            Record(
                e.message.topic,
                e.message.partition,
                e.message.offset,
                e.message.key,
                e.message.value,
                e.message.timestamp,
            )
            for e in events
        ]
        from stream_app.app import settings

        self.observe_age(records, time.time())
        policy = RetryPolicy(
            process=self._process,
            dead_letter=self._dead_letter,
            on_retry=lambda cause: self.metrics.retries.inc(cause=cause),
            liveness=self.liveness,
            max_backoff_s=settings.retry_max_backoff_s,
        )
        result = await until_done(policy, records)
        return result if isinstance(result, BatchStats) else BatchStats(consumed=len(records))

    async def _process(self, records: Sequence[Record]) -> BatchStats:
        processor = await self.processor()
        async with self.busy:
            began = time.perf_counter()
            stats = await processor.process(records)
            self.metrics.batch_seconds.observe(time.perf_counter() - began)
            self.metrics.batch_size.observe(len(records))
            self.last_batch_at = time.time()
        self.record(stats)
        return stats

    async def _dead_letter(self, failed: Sequence[tuple[Record, str]]) -> None:
        """Dead-letter records that failed on their own (``internal_error``)."""
        processor = await self.processor()
        now_ms = time.time() * 1000.0
        out = [processor.dead(rec, "internal_error", detail, now_ms) for rec, detail in failed]
        await processor.publisher.publish(out)
        stats = BatchStats()
        stats.dead["internal_error"] += len(out)
        self.record(stats)

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
        for partition in owned:
            now_ms = time.time() * 1000.0
            until = processor.event_time.get(partition)
            if await self._caught_up(app, processor, partition):
                until = max(until or now_ms, now_ms)
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
            except Exception as exc:
                cause = transient_cause(exc)
                if cause is None:
                    raise
                self.metrics.retries.inc(cause=cause)
                log.warning(
                    "decay sweep of partition %d will retry (%s): %s",
                    partition,
                    cause,
                    describe(exc),
                )
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

    async def _caught_up(self, app: Any, processor: BatchProcessor, partition: int) -> bool:
        """True when both source partitions have nothing left to process."""
        from faust.types import TP

        from stream_app.app import settings

        for topic in (settings.input_topic, settings.by_customer_topic):
            high = app.consumer.highwater(TP(topic, partition))
            if high is None or next_offset(app, processor, topic, partition) < high:
                return False
        return True

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
        max_age_ms=settings.max_event_age_ms,
        max_message_bytes=settings.max_message_bytes,
    )


runtime = Runtime()
