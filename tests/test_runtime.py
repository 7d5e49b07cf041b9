"""One rule for "the next offset to process", shared by the decay sweep and the lag
of /readyz and /metrics; and the 30-second log line read from the metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from faust.types import TP

from stream_app.faustx.adapters import FaustConsumer
from stream_app.http.health import consumer_lag
from stream_app.messages import Topics
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.report import Report
from stream_app.worker.stats import BatchStats

TOPICS = Topics("in", "in.by-customer", "out", "dlq", 1)


@dataclass
class FakeConsumer:
    """What the rule reads from faust's consumer: assignment, highwaters, committed."""

    high: dict[TP, int]
    _committed_offset: dict[TP, int | None] = field(default_factory=dict)

    def assignment(self) -> set[TP]:
        return set(self.high)

    def highwater(self, tp: TP) -> int:
        return self.high[tp]

    async def position(self, tp: TP) -> int:  # pragma: no cover - the rule must not call it
        raise AssertionError("the fetch position runs ahead of processing")


@dataclass
class FakeApp:
    consumer: FakeConsumer


def progress_with(offsets: dict[tuple[str, int], int]) -> PartitionProgress:
    progress = PartitionProgress(TOPICS)
    progress.advance(offsets, {})
    return progress


@pytest.mark.parametrize(
    ("processed", "committed", "expected"),
    [
        ({}, {}, 0),  # nothing committed, nothing processed: from the start
        ({}, {TP("in", 0): 40}, 40),  # before the first batch: the committed offset
        ({("in", 0): 44}, {TP("in", 0): 40}, 45),  # after a batch: one past it
        ({("in", 1): 9}, {TP("in", 0): None}, 0),  # another partition's progress
    ],
)
def test_next_offset(
    processed: dict[tuple[str, int], int], committed: dict[TP, int | None], expected: int
) -> None:
    consumer = FaustConsumer(FakeApp(FakeConsumer({TP("in", 0): 100}, committed)))
    progress = progress_with(processed)
    assert progress.next_offset("in", 0, consumer.committed("in", 0)) == expected
    assert progress.lag("in", 0, consumer) == 100 - expected


def test_lag_uses_the_same_rule_as_the_sweep() -> None:
    consumer = FakeConsumer(
        {TP("in", 0): 100, TP("in.by-customer", 0): 7, TP("other", 0): 5},
        {TP("in", 0): 40, TP("in.by-customer", 0): 7},
    )
    progress = progress_with({("in", 0): 59})
    lag = consumer_lag(FaustConsumer(FakeApp(consumer)), progress, TOPICS)
    assert lag == {"in:0": 40, "in.by-customer:0": 0}


def test_the_log_reports_the_counters_since_the_last_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    report = Report(WorkerMetrics())
    stats = BatchStats(consumed=5, applied=4)
    stats.dead["not_json"] += 1
    stats.changes["engagement.tier.changed"] += 2
    with caplog.at_level(logging.INFO, logger="stream_app.worker"):
        report.batch(stats)
        report.log()
        report.log()  # nothing new: nothing logged
        report.batch(BatchStats(consumed=3, applied=3))
        report.log()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("since")]
    assert lines == [
        "since last report: applied=4, consumed=5, dead:not_json=1, "
        "published:engagement.tier.changed=2",
        "since last report: applied=3, consumed=3",
    ]
