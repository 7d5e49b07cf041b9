"""A shadow's replay: its own consumer group reads the input from the earliest retained offset.

Every worker runs one replay consumer while the shadow has partitions the worker group
does not score yet; together they form the group ``<app id>.model-<slot>`` (the
co-partitioning assignor gives partition k of both source topics to one of them). Each
batch goes through the shadow's replay lane (:func:`stream_app.models.lanes.build_lane`
with ``replay=True``): scored and written in the shadow's namespace, published nowhere.
After each batch it commits its offsets and records in the registry how far it got per
source partition, which is what lets the worker group take a partition over
(:meth:`stream_app.models.conductor.Conductor.engage`): once the replay has processed
everything before the group's next offset, every batch is scored under both models.

A replay that is killed resumes from its committed offsets; its writes are fenced and
idempotent like any batch's (source marks).
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer

from stream_app.faustx.assignor import CopartitionedAssignor
from stream_app.kafka.auth import aiokafka_config
from stream_app.messages import Record, Topics
from stream_app.models.lanes import Lane
from stream_app.models.registry import ModelRegistry
from stream_app.settings import Settings

log = logging.getLogger("stream_app.models")


class ReplayConsumer:
    """Feeds a shadow's replay lane from its own consumer group, until stopped."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        lane: Lane,
        registry: ModelRegistry,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.lane = lane
        self.registry = registry
        self.group = lane.slot.group(settings.app_id)
        self._consumer: AIOKafkaConsumer | None = None
        self.processed = 0

    @property
    def slot_id(self) -> int:
        return self.lane.slot.id

    async def stop(self) -> None:
        """Leave the consumer group (the next replay consumer resumes from its commits)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    def _build(self) -> AIOKafkaConsumer:
        session_ms = 6000
        return AIOKafkaConsumer(
            *self.topics.sources,
            bootstrap_servers=",".join(self.settings.broker_list),
            group_id=self.group,
            client_id=f"{self.group}-replay",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            partition_assignment_strategy=(CopartitionedAssignor,),
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=10_000,
            request_timeout_ms=30_000,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=1024 * 1024,
            **aiokafka_config(self.settings),
        )

    async def step(self) -> None:
        """One batch: fetch, score, commit, record the progress. Retries are the caller's."""
        if self._consumer is None:
            consumer = self._build()
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
            log.info("replaying %s in consumer group %s", self.lane.slot.label, self.group)
        await self._step(self._consumer)

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        fetched: dict[Any, list[Any]] = await consumer.getmany(
            timeout_ms=500, max_records=self.settings.batch_size
        )
        if not fetched:
            return
        records = [
            Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp / 1000.0)
            for tp, msgs in fetched.items()
            for m in msgs
        ]
        try:
            await self.lane.scorer.process(records)
        except Exception:
            # not processed: read these again from the last committed offsets
            for tp in fetched:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
            raise
        last = {tp: msgs[-1].offset for tp, msgs in fetched.items() if msgs}
        await consumer.commit({tp: offset + 1 for tp, offset in last.items()})
        await self.registry.record_progress(
            self.slot_id, {(tp.topic, tp.partition): offset for tp, offset in last.items()}
        )
        self.processed += len(records)
