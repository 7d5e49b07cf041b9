"""Readiness checks and the gauges refreshed before ``/metrics`` renders."""

from __future__ import annotations

import time
from typing import Any

from stream_app.messages import Topics
from stream_app.store.state import StateStore
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.ports import Consumer
from stream_app.worker.progress import PartitionProgress


def consumer_lag(consumer: Consumer, progress: PartitionProgress, topics: Topics) -> dict[str, int]:
    """Per owned source partition: high watermark minus the next offset to process."""
    lag: dict[str, int] = {}
    for topic, partition in sorted(consumer.assignment()):
        if topic not in topics.sources:
            continue
        n = progress.lag(topic, partition, consumer)
        if n is not None:
            lag[f"{topic}:{partition}"] = n
    return lag


class Health:
    """Answers ``/readyz`` and refreshes the gauges ``/metrics`` shows."""

    def __init__(
        self,
        *,
        store: StateStore,
        consumer: Consumer,
        progress: PartitionProgress,
        topics: Topics,
        metrics: WorkerMetrics,
        ready_max_lag: int,
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.progress = progress
        self.topics = topics
        self.metrics = metrics
        self.ready_max_lag = ready_max_lag

    def consumer_lag(self) -> dict[str, int]:
        """See :func:`consumer_lag`."""
        return consumer_lag(self.consumer, self.progress, self.topics)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Broker and Redis reachable, partitions assigned, lag below the threshold."""
        checks: dict[str, Any] = {}
        ready = True
        try:
            began = time.perf_counter()
            await self.store.ping()
            rtt = time.perf_counter() - began
            self.metrics.redis_seconds.observe(rtt)
            checks["redis"] = {"ok": True, "rtt_ms": round(rtt * 1000, 3)}
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as such
            ready = False
            checks["redis"] = {"ok": False, "error": type(exc).__name__}
        try:
            assigned = self.consumer.assignment()
            checks["partitions"] = {"ok": bool(assigned), "assigned": len(assigned)}
            ready &= bool(assigned)
            total = sum(self.consumer_lag().values())
            checks["lag"] = {"ok": total <= self.ready_max_lag, "messages": total}
            ready &= total <= self.ready_max_lag
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - the consumer is not up: not ready
            ready = False
            checks["broker"] = {"ok": False, "error": type(exc).__name__}
        return ready, checks

    async def refresh_gauges(self) -> None:
        """Set the per-partition gauges (event time, lag, due-index size) before a scrape."""
        m = self.metrics
        now = time.time()
        for partition, ts in self.progress.event_times().items():
            m.event_time.set(ts / 1000.0, partition=str(partition))
            m.event_time_lag.set(max(0.0, now - ts / 1000.0), partition=str(partition))
        owned = {p for t, p in self.consumer.assignment() if t == self.topics.input}
        for partition in sorted(owned):
            m.due_size.set(await self.store.due_size(partition), partition=str(partition))
        for name, lag in self.consumer_lag().items():
            topic, part = name.rsplit(":", 1)
            m.consumer_lag.set(lag, topic=topic, partition=part)
