"""The worker's metrics: their names, types and samples, and ``/metrics`` rendering
(``prometheus_client``'s formats, chosen by the ``Accept`` header).

No services. The metrics of a running worker are checked in ``tests/integration/``
(``test_api.py``, ``test_dashboard.py``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.worker.metrics import LATENCY_BUCKETS, Registry, WorkerMetrics


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, "text/plain; version=0.0.4; charset=utf-8"),
        ("*/*", "text/plain; version=0.0.4; charset=utf-8"),
        # what Prometheus 2.x sends: OpenMetrics first
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores",
        ),
    ],
)
def test_metrics_exposition_follows_the_accept_header(
    accept: str | None, content_type: str
) -> None:
    m = WorkerMetrics()
    m.applied.inc(2)
    body, got = m.registry.exposition(accept)
    assert got == content_type
    text = body.decode()
    assert "engagement_events_applied_total 2.0" in text
    assert text.endswith("# EOF\n") == content_type.startswith("application/openmetrics-text")


def parse(registry: Registry) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(registry.render().decode())}


COUNTERS = {
    "engagement_events_consumed": (),
    "engagement_events_applied": (),
    "engagement_events_duplicate": (),
    "engagement_events_capped": (),
    "engagement_events_redelivered": (),
    "engagement_events_forwarded": (),
    "engagement_events_dead_lettered": ("reason",),
    "engagement_segment_changes_published": ("type",),
    "engagement_fenced_write_conflicts": (),
    "engagement_decay_crossings_fired": (),
    "engagement_batch_stage_seconds": ("stage",),
    "engagement_retries": ("cause",),
    "engagement_events_suppressed": (),
    "engagement_events_aliased": (),
    "engagement_lifecycle_requests": ("outcome",),
}
HISTOGRAMS = (
    "engagement_batch_size_messages",
    "engagement_batch_processing_seconds",
    "engagement_event_age_seconds",
    "engagement_redis_roundtrip_seconds",
)
GAUGES = {
    "engagement_decay_firing_lag_seconds": (),
    "engagement_event_time_timestamp_seconds": ("partition",),
    "engagement_event_time_lag_seconds": ("partition",),
    "engagement_watermark_seconds": ("partition",),
    "engagement_watermark_lag_seconds": ("partition",),
    "engagement_input_forwarded_ratio": ("partition",),
    "engagement_due_index_size": ("partition",),
    "engagement_consumer_lag_messages": ("topic", "partition"),
    "engagement_tier_customers": ("tier",),
    "engagement_segment_customers": ("segment",),
    "engagement_build_info": (),
    "engagement_oldest_unprocessed_age_seconds": (),
}
#: prometheus_client's process, platform and GC collectors: families every exporter has.
RUNTIME_FAMILIES = {
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "python_info": "gauge",
    "python_gc_collections": "counter",
}


def test_worker_metrics_parse_with_their_types() -> None:
    m = WorkerMetrics()
    families = parse(m.registry)
    kinds = {name: f.type for name, f in families.items() if name.startswith("engagement_")}
    assert kinds == {
        **dict.fromkeys(COUNTERS, "counter"),
        **dict.fromkeys(HISTOGRAMS, "histogram"),
        **dict.fromkeys(GAUGES, "gauge"),
    }
    assert all(f.documentation for f in families.values())
    assert {n: families[n].type for n in RUNTIME_FAMILIES} == RUNTIME_FAMILIES
    (build,) = families["engagement_build_info"].samples
    assert build.value == 1 and build.labels["version"] and build.labels["faust"]
    assert set(build.labels) == {"version", "python", "faust", "aiokafka"}
    # before anything happens: labelled metrics have no sample, histograms are all zeros
    for name in HISTOGRAMS:
        samples = {(s.name, s.labels.get("le")): s.value for s in families[name].samples}
        assert samples[(name + "_count", None)] == 0 and samples[(name + "_sum", None)] == 0
        assert samples[(name + "_bucket", "+Inf")] == 0


def test_worker_metrics_samples_after_use() -> None:
    m = WorkerMetrics()
    m.consumed.inc(7)
    m.applied.inc(5)
    m.dead.inc(reason="not_json")
    m.dead.inc(2, reason="not_json")
    m.dead.inc(reason="bad_field")
    m.published.inc(3, type="engagement.tier.changed")
    m.published.inc(type="engagement.segment.entered")
    for v in (1, 3, 500, 5000):
        m.batch_size.observe(v)
    m.event_time.set(1_700_000_000.5, partition="0")
    m.event_time.set(1_700_000_001.0, partition="3")
    m.tier_customers.set(12, tier="warm")
    m.segment_customers.set(3, segment="advocate")
    m.consumer_lag.set(12, topic="in", partition="1")
    m.decay_lag.set(0.25)
    m.retries.inc(cause="oom")
    m.retries.inc(2, cause="connection")
    m.oldest_unprocessed.set(4.5)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in parse(m.registry).values()
        for s in f.samples
    }
    assert samples[("engagement_events_consumed_total", ())] == 7
    assert samples[("engagement_events_applied_total", ())] == 5
    assert samples[("engagement_events_dead_lettered_total", (("reason", "not_json"),))] == 3
    assert samples[("engagement_events_dead_lettered_total", (("reason", "bad_field"),))] == 1
    published = "engagement_segment_changes_published_total"
    assert samples[(published, (("type", "engagement.tier.changed"),))] == 3
    assert samples[(published, (("type", "engagement.segment.entered"),))] == 1
    event_time = "engagement_event_time_timestamp_seconds"
    assert samples[(event_time, (("partition", "0"),))] == 1_700_000_000.5
    assert samples[(event_time, (("partition", "3"),))] == 1_700_000_001.0
    assert samples[("engagement_tier_customers", (("tier", "warm"),))] == 12
    assert samples[("engagement_segment_customers", (("segment", "advocate"),))] == 3
    lag = ("engagement_consumer_lag_messages", (("partition", "1"), ("topic", "in")))
    assert samples[lag] == 12
    assert samples[("engagement_decay_firing_lag_seconds", ())] == 0.25
    assert samples[("engagement_retries_total", (("cause", "oom"),))] == 1
    assert samples[("engagement_retries_total", (("cause", "connection"),))] == 2
    assert samples[("engagement_oldest_unprocessed_age_seconds", ())] == 4.5
    # histogram: cumulative buckets, ``le`` inclusive, +Inf is the count
    buckets = {
        float(labels[0][1]): v for (name, labels), v in samples.items()
        if name == "engagement_batch_size_messages_bucket"
    }  # fmt: skip
    assert buckets[1] == 1 and buckets[5] == 2 and buckets[250] == 2 and buckets[500] == 3
    assert buckets[2500] == 3 and buckets[math.inf] == 4
    assert samples[("engagement_batch_size_messages_count", ())] == 4
    assert samples[("engagement_batch_size_messages_sum", ())] == 5504


def test_histogram_bucket_edges() -> None:
    r = Registry()
    h = r.histogram("latency_seconds", "Latency.", LATENCY_BUCKETS)
    for v in (0.0, 0.001, 0.0010001, 10.0, 10.5, math.inf):
        h.observe(v)
    (family,) = text_string_to_metric_families(r.render().decode())
    cumulative = [s.value for s in family.samples if s.name.endswith("_bucket")]
    les = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
    assert les == [repr(float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]
    assert cumulative[0] == 2  # 0 and exactly 0.001
    assert cumulative[1] == 3
    assert cumulative[-2] == 4  # <= 10.0
    assert cumulative[-1] == 6
    assert cumulative == sorted(cumulative)


def test_histogram_observe_all_is_observe_of_each() -> None:
    # (float sums depend on their order: the same sum, bit for bit, means the same order)
    values = [0.1, 0.2, 0.3, 0.001, 0.0010001, 1e-9, 10.0, 10.5, 1e16, 1.0, -0.0]
    r = Registry()
    batched = r.histogram("a_seconds", "A.", LATENCY_BUCKETS)
    single = r.histogram("b_seconds", "B.", LATENCY_BUCKETS)
    batched.observe_all(iter(values))
    batched.observe_all([])
    for v in values:
        single.observe(v)
    assert batched.count == single.count == len(values)
    assert batched.counts == single.counts and sum(batched.counts) == len(values)
    assert batched.sum.hex() == single.sum.hex()


@pytest.mark.parametrize("value", ['with "quotes"', "back\\slash", "new\nline", "é|*|{x}", ""])
def test_label_values_round_trip(value: str) -> None:
    r = Registry()
    c = r.counter("demo_total", "Demo.", ("reason",))
    c.inc(reason=value)
    g = r.gauge("demo_gauge", "Demo gauge.", ("a", "b"))
    g.set(-1.5, a=value, b="x")
    families = {f.name: f for f in text_string_to_metric_families(r.render().decode())}
    (sample,) = families["demo"].samples
    assert sample.labels == {"reason": value} and sample.value == 1
    (sample,) = families["demo_gauge"].samples
    assert sample.labels == {"a": value, "b": "x"} and sample.value == -1.5


def test_metric_misuse_is_refused() -> None:
    r = Registry()
    c = r.counter("demo_total", "Demo.", ("reason",))
    with pytest.raises(ValueError, match="only go up"):
        c.inc(-1, reason="x")
    with pytest.raises(ValueError, match="labels"):
        c.inc(reason="x", other="y")
    with pytest.raises(ValueError, match="labels"):
        c.inc()
