"""The worker's stream logic, wired once: the batch processor and the decay sweep.

Both share the due hints and the partition progress, and make their outcomes durable
through the same effects step (:mod:`stream_app.worker.effects`). Nothing here knows
Kafka or Redis clients: the store, the publisher and the indexes are handed in
(:mod:`stream_app.worker.ports`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from scoring import Model
from stream_app.messages import Record, Topics
from stream_app.settings import Settings
from stream_app.store.records import PREVIOUS_RECORD_FORMAT, RECORD_FORMAT
from stream_app.worker import propagate
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.duehints import DueHints
from stream_app.worker.effects import Effects
from stream_app.worker.lifecycle import Lifecycle, LifecycleOptions
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.ports import Consumer, Indexes, LifecycleStore, Publisher, Store
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import BatchStats, SweepStats
from stream_app.worker.sweep import DecaySweep
from stream_app.worker.watermarks import Watermarks


@dataclass(frozen=True, slots=True)
class ScoringOptions:
    """The knobs of the batch processor and the sweep (see docs/configuration.md)."""

    explain_events: int = 10
    explain_full_ids: bool = False
    #: The record format written (the store's; 1 with ENGAGEMENT_WRITE_FORMAT=previous).
    record_format: int = RECORD_FORMAT
    dedup_memory: int = 16
    max_future_ms: int = 300_000
    due_horizon_ms: float = 86_400_000.0
    sweep_limit: int = 500
    max_age_ms: int | None = None
    max_message_bytes: int = 1_000_000
    suppress_ms: int = 30 * 86_400_000
    alias_ms: int = 30 * 86_400_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringOptions:
        # ENGAGEMENT_WRITE_FORMAT=previous: what the previous release reads, record format
        # 1 and explanation format 3 (the ids as sent)
        previous = settings.write_format == "previous"
        return cls(
            explain_events=settings.explain_events,
            explain_full_ids=settings.explain_full_ids or previous,
            record_format=PREVIOUS_RECORD_FORMAT if previous else RECORD_FORMAT,
            dedup_memory=settings.dedup_memory,
            max_future_ms=int(settings.max_future_seconds * 1000),
            due_horizon_ms=settings.due_horizon_seconds * 1000.0,
            sweep_limit=settings.decay_sweep_limit,
            max_age_ms=settings.max_event_age_ms,
            max_message_bytes=settings.max_message_bytes,
            suppress_ms=int(settings.suppression_days * 86_400_000),
            alias_ms=int(settings.alias_days * 86_400_000),
        )


class Scorer:
    """The batch processor and the decay sweep of one worker, sharing their state."""

    def __init__(
        self,
        *,
        model: Model,
        topics: Topics,
        store: Store,
        publisher: Publisher,
        indexes: Indexes | None = None,
        options: ScoringOptions = ScoringOptions(),
        clock: Callable[[], float] = time.time,
        progress: PartitionProgress | None = None,
        progress_store: propagate.ProgressStore | None = None,
        lifecycle_store: LifecycleStore | None = None,
    ) -> None:
        self.hints = DueHints()
        #: Shared by the scorers of every model one worker scores (the same batches).
        self.progress = PartitionProgress(topics) if progress is None else progress
        self.watermarks = Watermarks(topics, self.progress)
        self._publisher = publisher
        self._progress_store = progress_store or propagate.NoProgressStore()
        lifecycle = None
        if lifecycle_store is not None:
            lifecycle = Lifecycle(
                model=model,
                topics=topics,
                records=store,
                store=lifecycle_store,
                publisher=publisher,
                effects=Effects(store, publisher, self.hints),
                readside=ReadSide(model, indexes),
                hints=self.hints,
                progress=self.progress,
                options=LifecycleOptions(
                    suppress_ms=options.suppress_ms,
                    alias_ms=options.alias_ms,
                    explain_events=options.explain_events,
                    explain_full_ids=options.explain_full_ids,
                    max_future_ms=options.max_future_ms,
                    max_message_bytes=options.max_message_bytes,
                ),
                clock=clock,
            )
        self.batch = BatchProcessor(
            model=model,
            topics=topics,
            store=store,
            publisher=publisher,
            readstore=indexes,
            explain_events=options.explain_events,
            explain_full_ids=options.explain_full_ids,
            dedup_memory=options.dedup_memory,
            max_future_ms=options.max_future_ms,
            due_horizon_ms=options.due_horizon_ms,
            max_age_ms=options.max_age_ms,
            max_message_bytes=options.max_message_bytes,
            clock=clock,
            hints=self.hints,
            progress=self.progress,
            watermarks=self.watermarks,
            lifecycle=lifecycle,
        )
        self.sweep = DecaySweep(
            model=model,
            output_topic=topics.output,
            store=store,
            due_index=store,
            effects=Effects(store, publisher, self.hints, due_index=store),
            readside=ReadSide(model, indexes),
            limit=options.sweep_limit,
        )

    async def process(self, records: Sequence[Record]) -> BatchStats:
        """Score one batch (:meth:`BatchProcessor.process`)."""
        return await self.batch.process(records)

    async def sweep_partition(
        self, partition: int, until_ms: float, *, now_ms: float
    ) -> SweepStats:
        """Fire the crossings due on one partition (:meth:`DecaySweep.partition`)."""
        return await self.sweep.partition(partition, until_ms, now_ms=now_ms)

    async def dead_letter(self, failed: Sequence[tuple[Record, str]], reason: str) -> None:
        """Dead-letter records that failed on their own, with ``reason`` and each one's
        detail (:meth:`BatchProcessor.dead_letter`)."""
        await self.batch.dead_letter(failed, reason)

    async def sweep_limits(
        self, consumer: Consumer, owned: Sequence[int], *, now_ms: float
    ) -> dict[int, float | None]:
        """Send and save the owned partitions' progress; how far each one's sweep may fire
        (:func:`stream_app.worker.propagate.tick`)."""
        return await propagate.tick(
            self.watermarks,
            publisher=self._publisher,
            store=self._progress_store,
            consumer=consumer,
            owned=owned,
            now_ms=now_ms,
        )

    def watermark_gauges(
        self, metrics: WorkerMetrics, limits: Mapping[int, float | None], *, now_ms: float
    ) -> None:
        """Set the per-partition watermark gauges (:func:`stream_app.worker.propagate.gauges`)."""
        propagate.gauges(metrics, self.watermarks, limits, now_ms)

    def revoked(self, partitions: Iterable[int]) -> None:
        """Drop what is known of partitions moved away in a rebalance (and every due hint:
        the records this worker wrote may be written by another one now)."""
        partitions = list(partitions)
        self.progress.revoke(partitions)
        self.watermarks.forget(partitions)
        self.hints.clear()
