"""The worker's imperative shell: batches retried until done, the sweep over owned
partitions, rebalances, reports. Everything it uses is handed in (:class:`Services`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from stream_app.messages import Record
from stream_app.store.nps import NpsCounters
from stream_app.worker.errors import describe, transient_cause
from stream_app.worker.report import Report
from stream_app.worker.retry import Liveness, RetryPolicy, until_done
from stream_app.worker.services import Services
from stream_app.worker.stats import BatchStats

log = logging.getLogger("stream_app.worker")

#: How often the owner of a partition deletes its NPS counters past the retention.
NPS_PRUNE_EVERY_S = 3600.0


class Runtime:
    """Runs the scorer's batches and sweeps, one at a time, and reports what they did."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.scorer = services.scorer
        self.report = Report(services.metrics)
        #: One batch or one sweep at a time, so the two never race on a customer here.
        self.busy = asyncio.Lock()
        self._opened = False
        #: What the health checks read: progress, retries, the oldest message in hand.
        self.liveness = Liveness(last_progress=time.monotonic())
        self.nps = NpsCounters(services.redis, services.keys)
        self._pruned: dict[int, float] = {}  # partition -> when its NPS counters were pruned

    async def _open(self) -> None:
        if not self._opened:
            async with self.busy:  # (a sweep may tick while the first batch opens)
                if not self._opened:
                    await self.services.open()
                    self._opened = True

    async def handle(self, records: Sequence[Record]) -> BatchStats:
        """Process a batch until it is done (:mod:`stream_app.worker.retry`: transient
        failures retried with jittered backoff, anything else isolated)."""
        self.report.observe_age(records, time.time())
        metrics = self.services.metrics
        policy = RetryPolicy(
            process=self._process,
            dead_letter=self._dead_letter,
            on_retry=lambda cause: metrics.retries.inc(cause=cause),
            liveness=self.liveness,
            max_backoff_s=self.services.settings.retry_max_backoff_s,
        )
        result = await until_done(policy, records)
        return result if isinstance(result, BatchStats) else BatchStats(consumed=len(records))

    async def _process(self, records: Sequence[Record]) -> BatchStats:
        metrics = self.services.metrics
        await self._open()
        async with self.busy:
            began = time.perf_counter()
            stats = await self.scorer.process(records)
            metrics.batch_seconds.observe(time.perf_counter() - began)
            metrics.batch_size.observe(len(records))
        self.report.batch(stats)
        return stats

    async def _dead_letter(self, failed: Sequence[tuple[Record, str]]) -> None:
        """Dead-letter records that failed on their own (``internal_error``)."""
        await self.scorer.dead_letter(failed, "internal_error")
        stats = BatchStats()
        stats.dead["internal_error"] += len(failed)
        self.report.batch(stats)

    async def sweep(self) -> None:
        """Fire due decay crossings on every input partition this worker owns."""
        await self._open()
        consumer, topics = self.services.consumer, self.services.topics
        owned = sorted(p for t, p in consumer.assignment() if t == topics.input)
        now_ms = time.time() * 1000.0
        limits = await self.scorer.sweep_limits(consumer, owned, now_ms=now_ms)
        self.scorer.watermark_gauges(self.services.metrics, limits, now_ms=now_ms)
        for partition in owned:
            await self._prune_nps(partition)
            now_ms = time.time() * 1000.0
            until = limits[partition]
            if until is None:
                continue
            try:
                async with self.busy:
                    stats = await self.scorer.sweep_partition(partition, until, now_ms=now_ms)
            except Exception as exc:
                cause = transient_cause(exc)
                if cause is None:
                    raise
                self.services.metrics.retries.inc(cause=cause)
                why = describe(exc)
                log.warning(
                    "decay sweep of partition %d will retry (%s): %s", partition, cause, why
                )
                continue
            self.report.sweep(partition, stats)

    async def _prune_nps(self, partition: int) -> None:
        """About once an hour per owned partition: delete the NPS day counters older than
        ``ENGAGEMENT_NPS_RETENTION_DAYS`` (of both source topics' partition)."""
        now = time.monotonic()
        if now - self._pruned.get(partition, -NPS_PRUNE_EVERY_S) < NPS_PRUNE_EVERY_S:
            return
        days = self.services.settings.nps_retention_days
        first = (datetime.now(tz=UTC).date() - timedelta(days=days)).isoformat()
        try:
            for topic in self.services.topics.sources:
                removed = await self.nps.prune(topic, partition, first)
                if removed:
                    log.info(
                        "NPS counters before %s deleted: %d (%s:%d)",
                        first,
                        removed,
                        topic,
                        partition,
                    )
        except Exception as exc:
            if transient_cause(exc) is None:
                raise
            return  # (tried again next tick)
        self._pruned[partition] = now

    def revoked(self, partitions: Iterable[int]) -> None:
        """Drop event-time progress, offsets and due hints of revoked partitions."""
        moved = sorted(set(partitions))
        if moved:
            self.scorer.revoked(moved)
            log.info("partitions revoked: %s", moved)

    def log_stats(self) -> None:
        """Log what the worker did since the last report."""
        self.report.log()
