"""The worker's imperative shell: batches retried until done, the sweep over owned
partitions, rebalances, reports. Everything it uses is handed in (:class:`Services`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

import redis.exceptions
from aiokafka.errors import KafkaError

from stream_app.aioutil import raise_if_cancelled
from stream_app.messages import Record
from stream_app.worker.report import Report
from stream_app.worker.services import Services
from stream_app.worker.stats import BatchStats

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


class Runtime:
    """Runs the scorer's batches and sweeps, one at a time, and reports what they did."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.conductor = services.conductor
        self.report = Report(services.metrics)
        #: One batch or one sweep at a time, so the two never race on a customer here.
        self.busy = asyncio.Lock()
        self._opened = False

    async def _open(self) -> None:
        if not self._opened:
            async with self.busy:  # (a sweep may tick while the first batch opens)
                if not self._opened:
                    await self.services.open()
                    self._opened = True

    async def handle(self, records: Sequence[Record]) -> BatchStats:
        """Process a batch, retrying with backoff until it is done."""
        self.report.observe_age(records, time.time())
        metrics = self.services.metrics
        delay = 0.05
        while True:
            try:
                await self._open()
                async with self.busy:
                    began = time.perf_counter()
                    stats = await self.conductor.process(records)
                    metrics.batch_seconds.observe(time.perf_counter() - began)
                    metrics.batch_size.observe(len(records))
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
                self.report.batch(stats)
                raise_if_cancelled()
                return stats
            raise_if_cancelled()
            await asyncio.sleep(delay)  # back-off, not synchronisation
            delay = min(delay * 2, self.services.settings.retry_max_backoff_s)

    async def sweep(self) -> None:
        """Follow the model registry, then fire due decay crossings on every input
        partition this worker owns."""
        await self._open()
        consumer, topics = self.services.consumer, self.services.topics
        progress = self.conductor.progress
        owned = sorted(p for t, p in consumer.assignment() if t == topics.input)
        try:
            async with self.busy:
                await self.conductor.refresh()
                await self.conductor.ensure(owned)  # a switch reaches idle partitions too
        except RETRYABLE as exc:
            log.warning("following the model registry will retry: %s", exc)
            return
        for partition in owned:
            now_ms = time.time() * 1000.0
            until = progress.sweep_until(partition, now_ms, consumer)
            if until is None:
                continue
            try:
                async with self.busy:
                    stats = await self.conductor.sweep(partition, until, now_ms=now_ms)
            except RETRYABLE as exc:
                log.warning("decay sweep of partition %d will retry: %s", partition, exc)
                continue
            self.report.sweep(partition, stats)

    async def replays(self) -> None:
        """Run a shadow model's replay whenever one is wanted (a long-running task)."""
        await self._open()
        await self.conductor.run_replays(RETRYABLE)

    def revoked(self, partitions: Iterable[int]) -> None:
        """Drop event-time progress, offsets and due hints of revoked partitions."""
        moved = sorted(set(partitions))
        if moved:
            self.conductor.revoked(moved)
            log.info("partitions revoked: %s", moved)

    def log_stats(self) -> None:
        """Log what the worker did since the last report."""
        self.report.log()
