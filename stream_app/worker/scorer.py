"""The worker's stream logic, wired once: the batch processor and the decay sweep.

Both share the due hints and the partition progress, and make their outcomes durable
through the same effects step (:mod:`stream_app.worker.effects`). Nothing here knows
Kafka or Redis clients: the store, the publisher and the indexes are handed in
(:mod:`stream_app.worker.ports`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from scoring import Model
from stream_app.messages import Record, Topics
from stream_app.settings import Settings
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.duehints import DueHints
from stream_app.worker.effects import Effects
from stream_app.worker.ports import Indexes, Publisher, Store
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.readside import ReadSide
from stream_app.worker.stats import BatchStats, SweepStats
from stream_app.worker.sweep import DecaySweep


@dataclass(frozen=True, slots=True)
class ScoringOptions:
    """The knobs of the batch processor and the sweep (see docs/configuration.md)."""

    explain_events: int = 10
    dedup_memory: int = 16
    max_future_ms: int = 300_000
    due_horizon_ms: float = 86_400_000.0
    sweep_limit: int = 500
    max_age_ms: int | None = None
    max_message_bytes: int = 1_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringOptions:
        return cls(
            explain_events=settings.explain_events,
            dedup_memory=settings.dedup_memory,
            max_future_ms=int(settings.max_future_seconds * 1000),
            due_horizon_ms=settings.due_horizon_seconds * 1000.0,
            sweep_limit=settings.decay_sweep_limit,
            max_age_ms=settings.max_event_age_ms,
            max_message_bytes=settings.max_message_bytes,
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
    ) -> None:
        self.hints = DueHints()
        #: Shared by the scorers of every model one worker scores (the same batches).
        self.progress = PartitionProgress(topics) if progress is None else progress
        self.batch = BatchProcessor(
            model=model,
            topics=topics,
            store=store,
            publisher=publisher,
            readstore=indexes,
            explain_events=options.explain_events,
            dedup_memory=options.dedup_memory,
            max_future_ms=options.max_future_ms,
            due_horizon_ms=options.due_horizon_ms,
            max_age_ms=options.max_age_ms,
            max_message_bytes=options.max_message_bytes,
            clock=clock,
            hints=self.hints,
            progress=self.progress,
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

    def revoked(self, partitions: Iterable[int]) -> None:
        """Drop what is known of partitions moved away in a rebalance (and every due hint:
        the records this worker wrote may be written by another one now)."""
        self.progress.revoke(partitions)
        self.hints.clear()
