"""The decay firing rule through the worker's own code: the worker's ``Scorer``
(``BatchProcessor`` and ``DecaySweep``), the due index in the in-memory store of
``tests/support/fakes.py``, with the runtime's progress rule (the largest event time
applied on the partition, or the end of time once the partition has nothing left):
published changes and stored states equal one offline pass (``test_firing_rule.py``
checks the rule on the scoring core alone).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scoring import Event, decode_state, next_crossing
from stream_app import jsonutil
from stream_app.contracts import cloudevent
from stream_app.messages import Record, Topics, expected_partition
from stream_app.store.records import CustomerRecord, Write
from stream_app.worker.progress import PartitionProgress
from stream_app.worker.scorer import Scorer, ScoringOptions
from stream_app.worker.watermarks import Watermarks
from tests.scoring.firing import HOUR, MINUTE, MODEL, SETTINGS, T0, histories, offline
from tests.support.fakes import Collect, MemoryStore

PARTITIONS = 2
WORKER_CUSTOMERS = ["c1", "c2", "c3", "c4", "c5"]  # c4 on partition 0, the others on 1


class Worker:
    """The worker's ``Scorer`` (batch processor and decay sweep) over a
    :class:`MemoryStore`, fed from keyed input partitions (each in time order, as a
    keyed producer sends)."""

    def __init__(
        self,
        events: Sequence[Event],
        end: float,
        limit: int,
        explain_events: int = 0,
        store: MemoryStore | None = None,
    ) -> None:
        self.events, self.end, self.limit = list(events), end, limit
        self.store, self.publisher = store or MemoryStore(), Collect()
        self.scorer = Scorer(
            model=MODEL,
            topics=Topics("in", "in.by-customer", "out", "dlq", PARTITIONS),
            store=self.store,
            publisher=self.publisher,
            options=ScoringOptions(explain_events=explain_events, sweep_limit=limit),
            clock=lambda: end / 1000.0 + 86_400,
        )
        self.processor = self.scorer.batch
        self.progress = self.scorer.progress
        self.queues: dict[int, list[tuple[Record, int]]] = {p: [] for p in range(PARTITIONS)}
        for e in events:
            p = expected_partition(e.customer_id, PARTITIONS)
            body = {"event_id": e.event_id, "customer_id": e.customer_id, "type": e.type}
            value = jsonutil.dumps({**body, "timestamp": e.ts_ms})
            record = Record("in", p, len(self.queues[p]), e.customer_id.encode(), value)
            self.queues[p].append((record, e.ts_ms))
        self.last: list[Record] = []

    async def batch(self, p: int, n: int) -> None:
        taken, self.queues[p] = self.queues[p][:n], self.queues[p][n:]
        self.last = [r for r, _ in taken]
        await self.processor.process(self.last)

    async def sweep(self, p: int, until: float) -> None:
        await self.scorer.sweep_partition(p, until, now_ms=until)

    def waiting(self, p: int) -> list[int]:
        return [ts for _, ts in self.queues[p]]

    async def finish(self) -> None:
        """Caught up: sweep at the wall clock ``end`` until nothing is due before it."""
        for q in range(PARTITIONS):
            while await self.store.due(q, math.nextafter(self.end, -math.inf), 1):
                await self.sweep(q, self.end)
        sent = len(self.publisher.sent)
        await self.processor.process(self.last)  # a redelivery now changes nothing
        assert len(self.publisher.sent) == sent

    def check(self) -> None:
        """Published changes, stored states and the due index against one offline pass
        (apply in order, then every crossing strictly before ``end``, the sweep's rule)."""
        want, want_states = offline(self.events, math.nextafter(self.end, -math.inf))
        out = [m.value for m in self.publisher.sent if m.topic == "out"]
        assert sorted(out) == sorted(jsonutil.dumps(cloudevent(c)) for c in want)
        assert not [m for m in self.publisher.sent if m.topic != "out"]
        records = self.store.records.items()
        assert {cid: decode_state(r.state, MODEL) for cid, r in records if r.state} == want_states
        for cid, state in want_states.items():  # no entry later than the true next crossing
            at = next_crossing(state, MODEL)
            if at is not None:
                p = expected_partition(cid, PARTITIONS)
                assert self.store.due_index[p][cid] <= at


def test_a_decay_sweep_keeps_the_customers_explanation() -> None:
    """The explanation is stored in the customer's record, which the sweep rewrites: a
    crossing must carry it over unchanged, not drop it."""
    events = [Event("e1", "c1", "big", T0, None)]  # 15 points: warm, then decays to cold
    end = float(T0 + 12 * HOUR)
    w = Worker(events, end, limit=10, explain_events=10)
    p = expected_partition("c1", PARTITIONS)

    async def run() -> None:
        await w.batch(p, 1)
        explained = w.store.records["c1"].explain
        assert explained is not None
        published = len(w.publisher.sent)
        await w.sweep(p, end)
        assert len(w.publisher.sent) > published  # a decay crossing fired and was written
        assert w.store.records["c1"].version == 2
        assert w.store.records["c1"].explain == explained

    asyncio.run(run())


@SETTINGS
@given(histories(WORKER_CUSTOMERS), st.integers(0, 12 * HOUR), st.data())
def test_the_worker_fires_what_one_offline_pass_gives(
    events: list[Event], extra: int, data: st.DataObject
) -> None:
    """Batches of any size from either partition, redeliveries, and sweeps between
    them at the runtime's progress (the largest event time applied, or a wall clock
    while nothing waits, never later than the next event still to be produced), with
    a small sweep limit: published changes and stored states equal one offline pass."""
    events = sorted(events, key=lambda e: e.ts_ms)  # stable: keeps re-sent ids after theirs
    end = float(max(e.ts_ms for e in events) + extra)
    w = Worker(events, end, limit=data.draw(st.integers(1, 3), label="sweep limit"))

    async def run() -> None:
        while any(w.queues.values()):
            p = data.draw(st.sampled_from([q for q in w.queues if w.queues[q]]), label="from")
            action = data.draw(st.sampled_from(["batch", "sweep", "redeliver"]), label="action")
            if action == "batch":
                await w.batch(p, data.draw(st.integers(1, 3), label="batch size"))
            elif action == "redeliver" and w.last:
                await w.processor.process(w.last)
            elif action == "sweep":
                for q in range(PARTITIONS):
                    progress = w.progress.event_time(q)
                    if data.draw(st.booleans(), label="caught up"):  # a wall clock for now
                        lo = int(progress if progress is not None else T0 - HOUR)
                        hi = min(w.waiting(q), default=int(end))
                        progress = float(data.draw(st.integers(min(lo, hi), hi), label="now"))
                    if progress is not None:
                        await w.sweep(q, progress)
        await w.finish()

    asyncio.run(run())
    w.check()


def test_the_worker_waits_for_an_event_at_its_progress() -> None:
    """``a`` is at exactly 3.0 when ``big`` arrives, one half-life after ``pa``: in
    ``a_high`` at that instant, out just after, so a crossing is pending at the
    partition's progress while another event at that same time still waits. A sweep
    firing it (a sweep "up to" the progress, not strictly before) would publish an
    exit, a re-entry and an exit that one offline pass does not have."""
    half_hour = 30 * MINUTE
    events = [
        Event("e1", "c1", "pa", T0, None),
        Event("e2", "c1", "big", T0 + half_hour, None),
        Event("e3", "c1", "pc", T0 + half_hour, None),
    ]
    w = Worker(events, float(T0 + 2 * HOUR), limit=10)
    p = expected_partition("c1", PARTITIONS)

    async def run() -> None:
        await w.batch(p, 2)
        assert w.progress.event_time(p) == T0 + half_hour == w.waiting(p)[0]
        assert min(w.store.due_index[p].values()) == T0 + half_hour  # pending at progress
        published = len(w.publisher.sent)
        progress = w.progress.event_time(p)
        assert progress is not None
        await w.sweep(p, progress)
        assert len(w.publisher.sent) == published  # nothing fired: e3 may still change it
        await w.batch(p, 1)
        await w.finish()

    asyncio.run(run())
    w.check()


def test_progress_counts_the_customers_written_before_a_conflict() -> None:
    """c2's write wins in the first round, c1's loses to another writer and wins in
    the second: the partition's event-time progress is c2's later event, not only what
    the last round wrote (a lagging progress holds the partition's crossings back)."""

    class OtherWriterFirst(MemoryStore):
        async def commit(self, writes: Sequence[Write], **kw: Any) -> list[str]:
            if "c1" not in self.records:  # another worker wrote c1 just before us
                self.records["c1"] = CustomerRecord(version=1)
            return await super().commit(writes, **kw)

    events = [Event("e1", "c1", "pa", T0, None), Event("e2", "c2", "pb", T0 + HOUR, None)]
    w = Worker(events, float(T0 + 2 * HOUR), limit=10, store=OtherWriterFirst())
    p = expected_partition("c1", PARTITIONS)
    assert p == expected_partition("c2", PARTITIONS)

    stats = asyncio.run(w.processor.process([r for r, _ in w.queues[p]]))
    assert stats.conflicts == 1
    assert {cid: r.version for cid, r in w.store.records.items()} == {"c1": 2, "c2": 1}
    assert w.progress.event_time(p) == T0 + HOUR


class FakeConsumer:
    """What the progress rule reads of the worker's consumer (a
    :class:`stream_app.worker.ports.Consumer`), and the fetch position it must not read."""

    def __init__(
        self,
        high: dict[tuple[str, int], int],
        position: dict[tuple[str, int], int],
        committed: dict[tuple[str, int], int],
    ) -> None:
        self.high, self.pos, self._committed = high, position, committed

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self.high)

    def highwater(self, topic: str, partition: int, /) -> int | None:
        return self.high.get((topic, partition))

    def committed(self, topic: str, partition: int, /) -> int | None:
        return self._committed.get((topic, partition))

    async def position(self, tp: Any) -> int | None:  # pragma: no cover - must not be read
        return self.pos.get(tp)


def test_the_wall_clock_counts_only_once_a_partition_is_processed_to_its_end() -> None:
    """Caught up (progress = the wall clock) means processed up to the highwater of both
    source partitions. Before the first batch since an assignment, processing stands at
    the group's committed offset -- not at the consumer's position, which runs ahead over
    messages fetched but not processed (a sweep then fired a replayed customer's
    crossings up to the wall clock while its older events still waited)."""
    topics = Topics("in", "in.by-customer", "out", "dlq", 1)
    inp, rekeyed = (topics.input, 0), (topics.by_customer, 0)

    def caught_up(
        high: dict[tuple[str, int], int],
        done: dict[tuple[str, int], int],
        *,
        position: dict[tuple[str, int], int] | None = None,
        committed: dict[tuple[str, int], int] | None = None,
    ) -> bool:
        progress = PartitionProgress(topics)
        progress.advance(done, {})
        consumer = FakeConsumer(high, position or {}, committed or {})
        caught = progress.caught_up(0, consumer)
        watermarks = Watermarks(topics, progress)
        input_caught_up = watermarks.input_caught_up(0, consumer)
        assert caught <= input_caught_up  # (the input alone is caught up first)
        until = watermarks.until(0, watermarks.input_progress(0, 1_000.0, caught_up=caught))
        assert until == (1_000.0 if caught else None)  # no event time: the wall clock or none
        return caught

    fetched_all = {inp: 65, rekeyed: 0}
    assert not caught_up({rekeyed: 0}, {})  # the input's end is not known yet
    assert not caught_up({inp: 65, rekeyed: 0}, {}, position=fetched_all)  # the bug
    assert not caught_up({inp: 65, rekeyed: 0}, {inp: 1}, position=fetched_all)
    assert caught_up({inp: 65, rekeyed: 0}, {inp: 64}, position=fetched_all)
    assert caught_up({inp: 65, rekeyed: 0}, {}, committed={inp: 65})  # a restart, all done
    assert not caught_up({inp: 65, rekeyed: 0}, {}, committed={inp: 60})
    assert not caught_up({inp: 65, rekeyed: 3}, {inp: 64})  # re-keyed messages wait
    assert caught_up({inp: 65, rekeyed: 3}, {inp: 64, rekeyed: 2})
