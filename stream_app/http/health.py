"""Liveness and readiness, and the gauges refreshed before ``/metrics`` renders.

* ``/healthz`` (liveness): fails when the worker has completed no batch for
  ``ENGAGEMENT_STALL_SECONDS`` while it has lag or is retrying: a worker stuck on
  anything is restarted. Idle (no lag) is healthy, and so is a worker without partitions.
* ``/readyz`` (readiness): Redis answers, the consumer is up, the lag is below
  ``ENGAGEMENT_READY_MAX_LAG`` and no batch is being retried. A worker without partitions
  (more workers than partitions) is ready: it serves the read API and stands by.
"""

from __future__ import annotations

import time
from typing import Any

from stream_app.messages import Topics
from stream_app.store.readstore import ReadStore
from stream_app.store.state import StateStore
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.ports import Consumer
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.retry import Liveness


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
        readstore: ReadStore,
        consumer: Consumer,
        progress: PartitionProgress,
        topics: Topics,
        metrics: WorkerMetrics,
        ready_max_lag: int,
        liveness: Liveness | None = None,
        stall_seconds: float = 120.0,
    ) -> None:
        self.store = store
        self.readstore = readstore
        self.consumer = consumer
        self.progress = progress
        self.topics = topics
        self.metrics = metrics
        self.ready_max_lag = ready_max_lag
        self.live = liveness or Liveness(last_progress=time.monotonic())
        self.stall_seconds = stall_seconds

    def consumer_lag(self) -> dict[str, int]:
        """See :func:`consumer_lag`."""
        return consumer_lag(self.consumer, self.progress, self.topics)

    def total_lag(self) -> int | None:
        """Messages left on the owned source partitions (None: the consumer is not up)."""
        try:
            return sum(self.consumer_lag().values())
        except Exception:  # noqa: BLE001 - no consumer yet: lag unknown
            return None

    def retrying(self) -> dict[str, Any] | None:
        """The retry in progress (cause, seconds so far), if any."""
        since = self.live.retrying_since
        if since is None:
            return None
        return {"cause": self.live.retry_cause, "seconds": round(time.monotonic() - since, 1)}

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """False when no batch completed for ``stall_seconds`` while there is lag or a
        retry; a caught-up worker counts as progressing."""
        lag = self.total_lag()
        retry = self.retrying()
        now = time.monotonic()
        if not lag and retry is None:
            self.live.last_progress = now  # nothing waiting: caught up is progress
        idle = now - self.live.last_progress
        stalled = idle > self.stall_seconds and (bool(lag) or retry is not None)
        body: dict[str, Any] = {
            "status": "stalled" if stalled else "ok",
            "seconds_since_progress": round(idle, 1),
            "lag": lag,
        }
        if retry is not None:
            body["retrying"] = retry
        return not stalled, body

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Redis answers, the consumer is up, lag below the threshold, no retry going on.

        Partitions are reported, not required: a worker without any is ready.
        """
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
            checks["partitions"] = {"ok": True, "assigned": len(assigned)}
            total = sum(self.consumer_lag().values())
            checks["lag"] = {"ok": total <= self.ready_max_lag, "messages": total}
            ready &= total <= self.ready_max_lag
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - the consumer is not up: not ready
            ready = False
            checks["broker"] = {"ok": False, "error": type(exc).__name__}
        retry = self.retrying()
        checks["retrying"] = {"ok": retry is None, **(retry or {})}
        ready &= retry is None
        return ready, checks

    async def refresh_gauges(self) -> None:
        """Set the gauges read at scrape time: per partition (event time, lag, due-index
        size), and customers per tier and per segment."""
        m = self.metrics
        now = time.time()
        m.oldest_unprocessed.set(self.live.oldest_age(now))
        for partition, ts in self.progress.event_times().items():
            m.event_time.set(ts / 1000.0, partition=str(partition))
            m.event_time_lag.set(max(0.0, now - ts / 1000.0), partition=str(partition))
        owned = {p for t, p in self.consumer.assignment() if t == self.topics.input}
        for partition in sorted(owned):
            m.due_size.set(await self.store.due_size(partition), partition=str(partition))
        for name, lag in self.consumer_lag().items():
            topic, part = name.rsplit(":", 1)
            m.consumer_lag.set(lag, topic=topic, partition=part)
        for tier, counts in (await self.readstore.tier_counts(now * 1000)).items():
            m.tier_customers.set(counts["customers"], tier=tier)
        for segment, n in (await self.readstore.segment_counts()).items():
            m.segment_customers.set(n, segment=segment)
