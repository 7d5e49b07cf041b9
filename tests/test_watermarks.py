"""Watermarks through the by-customer topic, without a broker: the progress rule, control
records in a batch, the forwarding rule, and one decay tick's work (load, send, save)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence

import pytest

from scoring import InvalidEvent, load_default_model, parse_event
from stream_app import jsonutil
from stream_app.messages import Record, Topics, expected_partition
from stream_app.store.progress import StoredProgress
from stream_app.worker import propagate
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.watermarks import (
    CONTROL_HEADER,
    CONTROL_HEADERS,
    BatchProgress,
    Watermark,
    Watermarks,
    decode_watermark,
    encode_watermark,
)
from tests.support.fakes import Collect, MemoryStore

T0 = 1_700_000_000_000
N = 3
TOPICS = Topics("in", "in.by-customer", "out", "dlq", N)


def processor(partitions: int = N) -> tuple[BatchProcessor, MemoryStore, Collect]:
    store, out = MemoryStore(), Collect()
    topics = Topics("in", "in.by-customer", "out", "dlq", partitions)
    p = BatchProcessor(
        model=load_default_model(),
        topics=topics,
        store=store,
        publisher=out,
        clock=lambda: T0 / 1000 + 60,
    )
    return p, store, out


def customer_on(partition: int, partitions: int = N) -> str:
    return next(c for i in range(1000) if expected_partition(c := f"c{i}", partitions) == partition)


def event_value(cid: str, ts: int, eid: str = "e1") -> bytes:
    return jsonutil.dumps(
        {"event_id": eid, "customer_id": cid, "type": "webinar_attended", "timestamp": ts}
    )


def control(q: int, offset: int, mark: Watermark) -> Record:
    return Record(
        TOPICS.by_customer, q, offset, None, encode_watermark(mark), None, CONTROL_HEADERS
    )


# --------------------------------------------------------------------------- the rule


def watermarks(partitions: int = N) -> tuple[Watermarks, PartitionProgress]:
    topics = Topics("in", "in.by-customer", "out", "dlq", partitions)
    progress = PartitionProgress(topics)
    return Watermarks(topics, progress), progress


class Consumer:
    """What the worker reads of its consumer: highwaters and committed offsets."""

    def __init__(self, high: dict[tuple[str, int], int]) -> None:
        self.high = high

    def assignment(self) -> list[tuple[str, int]]:
        return list(self.high)

    def highwater(self, topic: str, partition: int, /) -> int | None:
        return self.high.get((topic, partition))

    def committed(self, topic: str, partition: int, /) -> int | None:
        return None


def test_upstream_progress_is_the_minimum_over_every_input_partitions_latest_watermark() -> None:
    wm, _ = watermarks()
    seen = BatchProgress()
    for p, at in ((0, 500.0), (1, 300.0)):
        seen.marks.append((2, p, Watermark(p, at, 10)))
    wm.commit(seen)
    assert wm.upstream_progress(2) is None  # input 2's watermark is not known yet
    assert wm.until(2, 1000.0) is None
    seen = BatchProgress(marks=[(2, 5, Watermark(2, 900.0)), (2, 6, Watermark(1, 200.0))])
    wm.commit(seen)
    assert wm.upstream_progress(2) == 300.0  # (an older watermark never moves it back)
    assert wm.until(2, 1000.0) == 300.0 and wm.until(2, 250.0) == 250.0
    assert watermarks(1)[0].until(0, 42.0) == 42.0  # one partition: nothing is forwarded


def test_input_progress_is_the_wall_clock_only_while_caught_up() -> None:
    wm, progress = watermarks()
    assert wm.input_progress(0, 5000.0, caught_up=False) is None
    assert wm.input_progress(0, 5000.0, caught_up=True) == 5000.0
    wm.commit(BatchProgress(input_time={0: 7000.0}))
    assert wm.input_progress(0, 5000.0, caught_up=True) == 7000.0
    assert wm.input_progress(0, 9000.0, caught_up=False) == 7000.0
    consumer = Consumer({("in", 0): 13, ("in.by-customer", 0): 100})
    assert not wm.input_caught_up(0, consumer)
    progress.advance({("in", 0): 12}, {})
    assert wm.input_caught_up(0, consumer)  # (the by-customer partition is not asked)


def test_durable_progress_merges_upward_and_a_revoked_partition_is_forgotten() -> None:
    wm, progress = watermarks()
    wm.commit(BatchProgress(input_time={1: 800.0}))
    progress.advance({("in", 1): 3}, {})
    wm.merge(1, StoredProgress(700.0, 9, {0: 100.0, 1: 50.0, 2: 75.0}, 4))
    assert wm.input_time[1] == 800.0 and progress.last_offset("in", 1) == 3  # (not moved)
    assert wm.upstream_progress(1) == 50.0 and 1 in wm.loaded
    assert wm.snapshot(1) == StoredProgress(800.0, 3, {0: 100.0, 1: 50.0, 2: 75.0})
    wm.forget([1])
    assert wm.upstream_progress(1) is None and 1 not in wm.loaded and 1 not in wm.input_time


def test_watermarks_are_sent_when_progress_moved() -> None:
    wm, _ = watermarks()
    marks = wm.to_emit({0: 100.0, 2: 50.0})
    assert marks == [Watermark(0, 100.0), Watermark(2, 50.0)]
    wm.sent(marks)
    assert wm.to_emit({0: 100.0, 2: 60.0}) == [Watermark(2, 60.0)]
    assert watermarks(1)[0].to_emit({0: 1.0}) == []


def test_a_control_record_round_trips_and_an_old_worker_cannot_score_it() -> None:
    mark = Watermark(2, float(T0), 17)
    assert decode_watermark(encode_watermark(mark)) == mark
    with pytest.raises(InvalidEvent) as caught:  # a worker that ignores the header
        parse_event(encode_watermark(mark), load_default_model(), now_ms=T0)
    assert caught.value.reason == "missing_field"


# --------------------------------------------------------------------------- in a batch


def test_control_records_never_reach_scoring_the_output_or_the_dead_letters() -> None:
    proc, store, out = processor()
    cid = customer_on(1)
    records = [
        control(1, 0, Watermark(0, float(T0), 5)),
        Record(TOPICS.by_customer, 1, 1, cid.encode(), event_value(cid, T0)),
        control(1, 2, Watermark(2, float(T0 + 5), 8)),
        Record(TOPICS.by_customer, 1, 3, None, b"{broken", None, CONTROL_HEADERS),
    ]
    stats = asyncio.run(proc.process(records))
    assert stats.control == 3 and stats.consumed == 1 and stats.applied == 1
    assert not stats.dead and not stats.forwarded
    assert list(store.records) == [cid]
    assert all(m.topic == "out" for m in out.sent)  # the customer's changes only
    assert proc.watermarks.upstream[1] == {0: float(T0), 2: float(T0 + 5)}
    assert proc.progress.last_offset(TOPICS.by_customer, 1) == 3  # (acked, then committed)


def test_the_control_header_on_the_input_topic_marks_nothing() -> None:
    proc, _, out = processor()
    forged = Record("in", 0, 0, None, encode_watermark(Watermark(1, 1e15)), None, CONTROL_HEADERS)
    stats = asyncio.run(proc.process([forged]))
    assert stats.dead == {"missing_field": 1} and [m.topic for m in out.sent] == ["dlq"]
    assert not proc.watermarks.upstream


def test_only_messages_keyed_by_their_customer_on_its_partition_are_scored_in_place() -> None:
    proc, _, out = processor()
    cid = customer_on(1)
    value = event_value(cid, T0)
    records = [
        Record("in", 1, 0, cid.encode(), value),  # keyed, owner partition: scored here
        Record("in", 1, 1, None, event_value(cid, T0 + 1, "e2")),  # unkeyed: forwarded
        Record("in", 1, 2, b"session-9", event_value(cid, T0 + 2, "e3")),  # other key
        Record("in", 0, 0, cid.encode(), event_value(cid, T0 + 3, "e4")),  # other partition
    ]
    stats = asyncio.run(proc.process(records))
    assert stats.applied == 1 and stats.forwarded == 3
    forwards = [m for m in out.sent if m.topic == TOPICS.by_customer]
    assert [m.key for m in forwards] == [cid.encode()] * 3 and all(
        m.partition is None for m in forwards
    )
    assert proc.watermarks.input_time == {0: T0 + 3, 1: T0 + 2}
    assert proc.watermarks.forwarded_share(1) == pytest.approx(2 / 3)
    single, _, _ = processor(partitions=1)
    stats = asyncio.run(single.process([Record("in", 0, 0, None, value)]))
    assert stats.applied == 1 and not stats.forwarded


def test_one_warning_per_partition_when_most_of_its_input_is_forwarded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc, _, _ = processor()
    cid = customer_on(1)
    records = [Record("in", 0, i, None, event_value(cid, T0 + i, f"e{i}")) for i in range(150)]
    with caplog.at_level(logging.WARNING, logger="stream_app.worker.watermarks"):
        asyncio.run(proc.process(records[:60]))
        assert not caplog.records  # too few to tell
        asyncio.run(proc.process(records[60:]))
        asyncio.run(proc.process([Record("in", 0, 150, None, event_value(cid, T0, "x"))]))
    assert len(caplog.records) == 1
    assert "partitioner=murmur2_random" in caplog.text and "input partition 0" in caplog.text


# --------------------------------------------------------------------------- one tick


class Progress:
    """A ProgressStore in memory (fields only move up, as progress_max.lua)."""

    def __init__(self, stored: Mapping[int, StoredProgress]) -> None:
        self.stored = dict(stored)
        self.loads: list[list[int]] = []
        self.saves: list[dict[int, StoredProgress]] = []

    async def load(self, partitions: Sequence[int]) -> dict[int, StoredProgress]:
        self.loads.append(list(partitions))
        return {p: self.stored.get(p, StoredProgress()) for p in partitions}

    async def save(self, progress: Mapping[int, StoredProgress]) -> None:
        self.saves.append(dict(progress))


def test_a_tick_loads_new_partitions_sends_moved_watermarks_and_saves_what_changed() -> None:
    (wm, progress), out = watermarks(), Collect()
    store = Progress({1: StoredProgress(900.0, 4, {0: 800.0, 1: 850.0, 2: 700.0}, 11)})
    progress.advance({("in", 1): 4, ("in.by-customer", 1): 11}, {})
    consumer = Consumer({("in", 0): 3, ("in", 1): 9})

    def tick(now: float) -> dict[int, float | None]:
        return asyncio.run(
            propagate.tick(
                wm, publisher=out, store=store, consumer=consumer, owned=[0, 1], now_ms=now
            )
        )

    limits = tick(1000.0)
    assert store.loads == [[0, 1]]
    assert limits == {0: None, 1: 700.0}  # a restart goes on from the stored progress
    assert [(m.partition, decode_watermark(m.value)) for m in out.sent] == [
        (q, Watermark(1, 900.0, 4)) for q in range(N)
    ]  # input 0 has no progress yet: nothing to say
    assert all(m.headers == ((CONTROL_HEADER, b"watermark"),) and m.key is None for m in out.sent)
    assert store.saves == [{0: StoredProgress(), 1: StoredProgress(900.0, 4, wm.upstream[1], 11)}]

    out.sent.clear()
    progress.advance({("in", 0): 2}, {})  # input 0 processed to its end: caught up
    limits = tick(2000.0)
    assert store.loads == [[0, 1]]  # loaded once
    assert [decode_watermark(m.value) for m in out.sent] == [Watermark(0, 2000.0, 2)] * N
    # the wall clock of a caught-up partition is sent, never kept: it holds only while the
    # partition stays caught up (a successor with a backlog would fire ahead of it)
    assert store.saves[-1] == {0: StoredProgress(None, 2)}
    assert limits == {0: None, 1: 700.0}
    assert math.isinf(watermarks(1)[0].until(0, math.inf) or 0)
