"""Where a batch's time goes: the pipeline's stage timings, and their metric."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson

import scoring
from stream_app.messages import OutMessage, Record, Topics, expected_partition
from stream_app.store.records import CustomerRecord, Write
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.report import Report
from stream_app.worker.stats import BatchStats

MODEL = scoring.load_default_model()


class NewCustomers:
    """A store where every customer is new and every write wins."""

    def __init__(self) -> None:
        self.writes: list[Write] = []

    async def load(self, ids: Sequence[str]) -> dict[str, CustomerRecord]:
        return {cid: CustomerRecord() for cid in ids}

    async def commit(self, writes: Sequence[Write], **_: object) -> list[str]:
        self.writes.extend(writes)
        return []


class Published:
    def __init__(self) -> None:
        self.sent: list[OutMessage] = []

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        self.sent.extend(messages)


def _records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        cid = f"c-{i}"
        doc = {"event_id": f"e-{i}", "customer_id": cid, "type": "review_submitted",
               "timestamp": 1_700_000_000_000 + i}  # fmt: skip
        out.append(Record("in", expected_partition(cid, 4), i, cid.encode(), orjson.dumps(doc)))
    return out


def test_a_batch_reports_the_time_of_each_stage_and_no_more_than_it_took() -> None:
    store = NewCustomers()
    processor = BatchProcessor(
        model=MODEL,
        topics=Topics("in", "in.by-customer", "out", "dlq", 4),
        store=store,
        publisher=Published(),
        clock=lambda: 1_700_000_100.0,
    )
    began = time.perf_counter()
    stats = asyncio.run(processor.process(_records(50)))
    took = time.perf_counter() - began
    assert len(store.writes) == 50
    assert set(stats.seconds) == {"score", "read", "publish", "write"}
    assert all(s >= 0 for s in stats.seconds.values())
    assert 0 < sum(stats.seconds.values()) <= took
    assert stats.seconds["score"] == max(stats.seconds.values())  # no I/O here: all CPU


def test_stage_seconds_add_up_in_the_metrics() -> None:
    metrics = WorkerMetrics()
    report = Report(metrics)
    for score in (0.25, 0.5):
        stats = BatchStats(consumed=1)
        stats.seconds["score"] += score
        stats.seconds["publish"] += 0.0625
        report.batch(stats)
    text = metrics.registry.render().decode()
    assert 'engagement_batch_stage_seconds_total{stage="score"} 0.75' in text
    assert 'engagement_batch_stage_seconds_total{stage="publish"} 0.125' in text


def test_each_message_age_at_batch_start_is_observed() -> None:
    metrics = WorkerMetrics()
    records = [
        Record("in", 0, 0, None, b"{}", timestamp=99.75),
        Record("in", 0, 1, None, b"{}", timestamp=99.5),
        Record("in", 0, 2, None, b"{}", timestamp=None),  # no timestamp: not observed
        Record("in", 0, 3, None, b"{}", timestamp=100.5),  # producer clock ahead: age 0
    ]
    Report(metrics).observe_age(records, now=100.0)
    age = metrics.event_age
    assert (age.count, age.sum) == (3, 0.75)
    assert 'engagement_event_age_seconds_bucket{le="0.25"} 2' in metrics.registry.render().decode()
