"""A small Prometheus registry (text exposition format 0.0.4), no dependency.

Counters and gauges with labels, and histograms with fixed buckets. The
worker's runtime feeds them; ``GET /metrics`` renders them.

>>> r = Registry()
>>> c = r.counter("demo_total", "Demo events.", ("kind",))
>>> c.inc(kind="a")
>>> print(r.render().decode().splitlines()[2])
demo_total{kind="a"} 1.0
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Sequence
from typing import TypeVar

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing value per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, k)} {v!r}" for k, v in self.values.items()]


class Gauge(Counter):
    """A value that goes up and down, per label set."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)


class Histogram(_Metric):
    """Observations counted in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> list[str]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == math.inf else repr(float(bound))
            out.append(f'{self.name}_bucket{{le="{le}"}} {running}')
        out += [f"{self.name}_sum {self.sum!r}", f"{self.name}_count {self.count}"]
        return out


M = TypeVar("M", bound=_Metric)


class Registry:
    """Holds metrics in registration order and renders them."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))

    def histogram(self, name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))

    def _add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for m in self.metrics:
            lines += m.header() + m.lines()
        return ("\n".join(lines) + "\n").encode()


class WorkerMetrics:
    """Every metric the worker exports."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        p = "engagement_"
        self.consumed = r.counter(p + "events_consumed_total", "Messages consumed from the inputs.")
        self.applied = r.counter(p + "events_applied_total", "Events that changed a customer.")
        self.duplicate = r.counter(p + "events_duplicate_total", "Events already applied (by id).")
        self.capped = r.counter(p + "events_capped_total", "Events accepted past a daily cap.")
        self.redelivered = r.counter(
            p + "events_redelivered_total", "Messages skipped: offset already applied."
        )
        self.forwarded = r.counter(
            p + "events_forwarded_total", "Messages re-keyed to the by-customer topic."
        )
        self.dead = r.counter(
            p + "events_dead_lettered_total", "Messages sent to the dead-letter topic.", ("reason",)
        )
        self.published = r.counter(
            p + "segment_changes_published_total", "Segment-change events published.", ("type",)
        )
        self.conflicts = r.counter(p + "fenced_write_conflicts_total", "Fenced writes that lost.")
        self.retries = r.counter(
            p + "retries_total",
            "Batch and sweep retries, by cause (connection, timeout, loading, busy, failover, "
            "oom, auth, kafka, conflict, error).",
            ("cause",),
        )
        self.oldest_unprocessed = r.gauge(
            p + "oldest_unprocessed_age_seconds",
            "Age (now minus Kafka timestamp) of the oldest message taken but not yet done: "
            "the batch in hand, retried or not; 0 between batches.",
        )
        self.decay_fired = r.counter(p + "decay_crossings_fired_total", "Decay crossings fired.")
        self.batch_size = r.histogram(p + "batch_size", "Messages per batch.", SIZE_BUCKETS)
        self.batch_seconds = r.histogram(
            p + "batch_processing_seconds", "Time to process one batch.", LATENCY_BUCKETS
        )
        self.event_age = r.histogram(
            p + "event_age_seconds",
            "Age of each message (now minus its Kafka timestamp) when its batch starts.",
            LATENCY_BUCKETS,
        )
        self.stage_seconds = r.counter(
            p + "batch_stage_seconds_total",
            "Time spent per batch stage: score (CPU), read and write (Redis), publish (acks).",
            ("stage",),
        )
        self.redis_seconds = r.histogram(
            p + "redis_roundtrip_seconds", "Redis PING round trip (health probe).", LATENCY_BUCKETS
        )
        self.decay_lag = r.gauge(
            p + "decay_firing_lag_seconds", "Largest delay of a fired crossing, last sweep."
        )
        self.event_time = r.gauge(
            p + "event_time_seconds", "Largest event time applied, per partition.", ("partition",)
        )
        self.event_time_lag = r.gauge(
            p + "event_time_lag_seconds", "Wall clock minus event-time progress.", ("partition",)
        )
        self.due_size = r.gauge(
            p + "due_index_size", "Customers waiting in the due index.", ("partition",)
        )
        self.consumer_lag = r.gauge(
            p + "consumer_lag_messages", "High watermark minus next offset.", ("topic", "partition")
        )

    def counts(self) -> collections.Counter[str]:
        """The counters as flat names (``applied``, ``dead:not_json``, ...) for the log.

        >>> m = WorkerMetrics()
        >>> m.applied.inc(3); m.dead.inc(1, reason="not_json")
        >>> sorted(m.counts().items())
        [('applied', 3), ('dead:not_json', 1)]
        """
        out: collections.Counter[str] = collections.Counter()
        plain = {
            "consumed": self.consumed, "applied": self.applied, "duplicate": self.duplicate,
            "capped": self.capped, "redelivered": self.redelivered, "forwarded": self.forwarded,
            "conflicts": self.conflicts, "decay:fired": self.decay_fired,
        }  # fmt: skip
        for name, counter in plain.items():
            for value in counter.values.values():
                out[name] += int(value)
        for prefix, counter in (("published", self.published), ("dead", self.dead)):
            for (label,), value in counter.values.items():
                out[f"{prefix}:{label}"] += int(value)
        return +out  # (zero counts dropped)
