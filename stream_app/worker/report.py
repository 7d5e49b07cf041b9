"""What the worker did, into its metrics and a log line every 30 seconds."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from stream_app.messages import Record
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.stats import BatchStats, SweepStats

log = logging.getLogger("stream_app.worker")


class Report:
    """Counts batches and sweeps into ``metrics``; logs the counts since the last report."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self.max_decay_lag_ms = 0.0
        self._reported: Counter[str] = Counter()

    def observe_age(self, records: Sequence[Record], now: float) -> None:
        """How old each message is (by its Kafka timestamp) when its batch starts."""
        self.metrics.event_age.observe_all(
            max(now - ts, 0.0) for rec in records if (ts := rec.timestamp) is not None
        )

    def batch(self, stats: BatchStats) -> None:
        """Count one batch, and log its dead letters by reason."""
        m = self.metrics
        m.consumed.inc(stats.consumed)
        m.applied.inc(stats.applied)
        m.duplicate.inc(stats.duplicate)
        m.capped.inc(stats.capped)
        m.redelivered.inc(stats.redelivered)
        m.forwarded.inc(stats.forwarded)
        m.conflicts.inc(stats.conflicts)
        m.suppressed.inc(stats.suppressed)
        m.aliased.inc(stats.aliased)
        for outcome, n in stats.lifecycle.items():
            m.lifecycle.inc(n, outcome=outcome)
        for name, n in stats.changes.items():
            m.published.inc(n, type=name)
        for stage, seconds in stats.seconds.items():
            m.stage_seconds.inc(seconds, stage=stage)
        for reason, n in stats.dead.items():
            m.dead.inc(n, reason=reason)
            log.warning("dead-lettered %d message(s): %s", n, reason)

    def sweep(self, partition: int, stats: SweepStats) -> None:
        """Count one partition's sweep."""
        m = self.metrics
        m.decay_fired.inc(stats.fired)
        for name, n in stats.by_type.items():
            m.published.inc(n, type=name)
        m.decay_lag.set(stats.max_lag_ms / 1000.0)
        if stats.fired:
            log.debug(
                "partition %d: fired %d crossing(s), %d change(s), lag %.0f ms",
                partition,
                stats.fired,
                stats.changes,
                stats.max_lag_ms,
            )
            self.max_decay_lag_ms = max(self.max_decay_lag_ms, stats.max_lag_ms)

    def log(self) -> None:
        """Log the counts since the last report (nothing when nothing happened)."""
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
