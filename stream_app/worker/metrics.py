"""The worker's Prometheus metrics, through ``prometheus_client``.

Each :class:`WorkerMetrics` owns a ``CollectorRegistry`` (not the process-global one), with
the worker's counters, gauges and histograms, ``engagement_build_info``, and the client's
process and platform collectors (``process_*``, ``python_info``). ``GET /metrics`` renders
it in the format the scraper asks for (:func:`exposition`). The small wrappers keep the
calls the worker makes short (``counter.inc(2, reason="not_json")``) and check label names.

>>> r = Registry()
>>> c = r.counter("demo_total", "Demo events.", ("kind",))
>>> c.inc(kind="a")
>>> [line for line in r.render().decode().splitlines() if not line.startswith("#")]
['demo_total{kind="a"} 1.0']
"""

from __future__ import annotations

import bisect
import collections
import itertools
import platform
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.utils import floatToGoString

# A counter's ``_created`` series (its creation time) doubles every family in the text
# format and tells a scraper nothing a restart's reset does not: off, as most exporters do.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class _Labelled:
    """A ``prometheus_client`` metric, its label names checked, its children cached."""

    def __init__(self, metric: Any, name: str, labels: Sequence[str]) -> None:
        self._metric = metric
        self.name = name
        self.label_names = tuple(labels)
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, labels: dict[str, str]) -> Any:
        try:
            key = tuple(labels[n] for n in self.label_names)
        except KeyError:
            key = None
        if key is None or len(labels) != len(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {list(self.label_names)}")
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(*key) if key else self._metric
        return child

    @property
    def values(self) -> dict[tuple[str, ...], float]:
        """The current value per label-value tuple (in ``label_names`` order)."""
        out: dict[tuple[str, ...], float] = {}
        for family in self._metric.collect():
            for sample in family.samples:
                if sample.name in (self.name, family.name):
                    out[tuple(sample.labels[n] for n in self.label_names)] = sample.value
        return out


class Counter(_Labelled):
    """A monotonically increasing value per label set."""

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        metric = prometheus_client.Counter(name, help_text, labels, registry=registry)
        super().__init__(metric, name, labels)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self._child(labels).inc(amount)


class Gauge(_Labelled):
    """A value that goes up and down, per label set."""

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        metric = prometheus_client.Gauge(name, help_text, labels, registry=registry)
        super().__init__(metric, name, labels)

    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)


class Histogram:
    """Observations counted in cumulative buckets, with their sum and count.

    A ``prometheus_client`` custom collector: ``observe`` runs for every message a worker
    takes (its age), so it only adds to plain numbers (~0.2 µs, where the client's own
    histogram, with its lock and value objects, takes ~1 µs); the scrape builds the family.
    """

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.help = help_text
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0
        registry.register(self)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # le: the bound included
        self.sum += value
        self.count += 1

    def observe_all(self, values: Iterable[float]) -> None:
        """``observe`` each value, in order (one call for a batch's messages)."""
        counts, bounds, where = self.counts, self.bounds, bisect.bisect_left
        total, n = self.sum, 0
        for value in values:
            counts[where(bounds, value)] += 1
            total += value
            n += 1
        self.sum = total
        self.count += n

    def collect(self) -> Iterator[HistogramMetricFamily]:
        les = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        cumulative = list(itertools.accumulate(self.counts))
        yield HistogramMetricFamily(
            self.name, self.help, buckets=list(zip(les, cumulative, strict=True)),
            sum_value=self.sum,
        )  # fmt: skip

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.help)


class Registry:
    """A ``CollectorRegistry`` with shorthands to add metrics, and its text rendering."""

    def __init__(self) -> None:
        self.collectors = CollectorRegistry(auto_describe=True)

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, help_text, labels, self.collectors)

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, help_text, labels, self.collectors)

    def histogram(self, name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, help_text, buckets, self.collectors)

    def render(self) -> bytes:
        """The Prometheus text format 0.0.4."""
        return bytes(generate_latest(self.collectors))

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type for a scrape with this ``Accept`` header: OpenMetrics
        when asked for, else the text format 0.0.4 (``prometheus_client``'s negotiation)."""
        encoder, content_type = choose_encoder(accept or "")
        return bytes(encoder(self.collectors)), content_type


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


class WorkerMetrics:
    """Every metric the worker exports."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        prometheus_client.ProcessCollector(registry=r.collectors)
        prometheus_client.PlatformCollector(registry=r.collectors)
        prometheus_client.GCCollector(registry=r.collectors)
        p = "engagement_"
        self.build_info = prometheus_client.Info(
            p + "build", "The engagement scorer's version and its runtime.",
            registry=r.collectors,
        )  # fmt: skip
        self.build_info.info(
            {
                "version": _version("engagement-scorer"),
                "python": platform.python_version(),
                "faust": _version("faust-streaming"),
                "aiokafka": _version("aiokafka"),
            }
        )
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
        self.suppressed = r.counter(
            p + "events_suppressed_total",
            "Events of erased customers, dropped (never dead-lettered).",
        )
        self.aliased = r.counter(
            p + "events_aliased_total", "Events of merged-away customers, sent to the survivor."
        )
        self.lifecycle = r.counter(
            p + "lifecycle_requests_total",
            "Erase and merge requests and hand-overs, by outcome.",
            ("outcome",),
        )
        self.decay_fired = r.counter(p + "decay_crossings_fired_total", "Decay crossings fired.")
        self.batch_size = r.histogram(
            p + "batch_size_messages", "Messages per batch.", SIZE_BUCKETS
        )
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
            p + "event_time_timestamp_seconds",
            "Largest event time applied, per partition (Unix time).",
            ("partition",),
        )
        self.event_time_lag = r.gauge(
            p + "event_time_lag_seconds", "Wall clock minus event-time progress.", ("partition",)
        )
        self.watermark = r.gauge(
            p + "watermark_seconds",
            "Event-time progress the decay sweep fires up to, per partition.",
            ("partition",),
        )
        self.watermark_lag = r.gauge(
            p + "watermark_lag_seconds", "Wall clock minus the watermark.", ("partition",)
        )
        self.forwarded_share = r.gauge(
            p + "input_forwarded_ratio",
            "Share of valid input events forwarded to the by-customer topic, per partition.",
            ("partition",),
        )
        self.due_size = r.gauge(
            p + "due_index_size", "Customers waiting in the due index.", ("partition",)
        )
        self.consumer_lag = r.gauge(
            p + "consumer_lag_messages", "High watermark minus next offset.", ("topic", "partition")
        )
        self.tier_customers = r.gauge(
            p + "tier_customers", "Customers in each tier now (all workers).", ("tier",)
        )
        self.segment_customers = r.gauge(
            p + "segment_customers", "Customers in each rule segment now (all workers).",
            ("segment",),
        )  # fmt: skip

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
            "suppressed": self.suppressed, "aliased": self.aliased,
        }  # fmt: skip
        for name, counter in plain.items():
            for value in counter.values.values():
                out[name] += int(value)
        labelled = (
            ("published", self.published),
            ("dead", self.dead),
            ("lifecycle", self.lifecycle),
        )
        for prefix, counter in labelled:
            for (label,), value in counter.values.items():
                out[f"{prefix}:{label}"] += int(value)
        return +out  # (zero counts dropped)
