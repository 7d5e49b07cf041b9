"""Durable progress across a restart, without a broker or Redis: a successor goes on from
what its predecessor processed, and a restart changes no score.

The interleaving a loaded machine produces now and then is forced here: the successor's
first decay tick runs before it has read the backlog its predecessor left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from scoring import CustomerState, decode_state, load_default_model
from stream_app import jsonutil
from stream_app.messages import Record, Topics, expected_partition
from stream_app.store.progress import StoredProgress
from stream_app.worker.scorer import Scorer
from tests.support.diff import state_diff
from tests.support.fakes import Collect, MemoryStore
from tests.support.fold import fold

MODEL = load_default_model()
DAY = 86_400_000
T0 = 1_700_000_000_000
#: The wall clock when the history below is replayed: after all of it.
NOW = T0 + 40 * DAY
TOPICS = Topics("in", "in.by-customer", "out", "dlq", 1)  # (one partition: no watermarks)
CID = "c-1"

#: Two webinars make the customer warm; then a web visit a day. Without the visits it
#: would leave warm after about 4.6 days and enter "lapsing" after 14 quiet days.
HISTORY = [
    *((f"w{i}", "webinar_attended", T0 + i) for i in range(2)),
    *((f"v{d}", "web_visit", T0 + d * DAY) for d in range(1, 11)),
]
#: The predecessor processes this many messages before it stops.
DONE = 2


class Progress:
    """A ProgressStore in memory, shared by a worker and its successor (fields only move
    up, as ``progress_max.lua``)."""

    def __init__(self) -> None:
        self.stored: dict[int, StoredProgress] = {}

    async def load(self, partitions: Sequence[int]) -> dict[int, StoredProgress]:
        return {p: self.stored.get(p, StoredProgress()) for p in partitions}

    async def save(self, progress: Mapping[int, StoredProgress]) -> None:
        for p, new in progress.items():
            old = self.stored.get(p, StoredProgress())
            ms = [x for x in (old.input_ms, new.input_ms) if x is not None]
            self.stored[p] = StoredProgress(
                max(ms) if ms else None,
                max(old.input_offset, new.input_offset),
                {**old.upstream, **new.upstream},
                max(old.upstream_offset, new.upstream_offset),
            )


class Consumer:
    """The input partition's highwater (None: not known yet) and committed offset."""

    def __init__(self, high: int | None, committed: int | None = None) -> None:
        self.high, self.committed_offset = high, committed

    def assignment(self) -> list[tuple[str, int]]:
        return [(TOPICS.input, 0), (TOPICS.by_customer, 0)]

    def highwater(self, topic: str, partition: int, /) -> int | None:
        return self.high if topic == TOPICS.input else 0

    def committed(self, topic: str, partition: int, /) -> int | None:
        return self.committed_offset if topic == TOPICS.input else None


def message(offset: int) -> Record:
    eid, kind, ts = HISTORY[offset]
    doc = {"event_id": eid, "customer_id": CID, "type": kind, "timestamp": ts}
    return Record(TOPICS.input, 0, offset, CID.encode(), jsonutil.dumps(doc))


def scorer(store: MemoryStore, progress: Progress) -> Scorer:
    return Scorer(
        model=MODEL,
        topics=TOPICS,
        store=store,
        publisher=Collect(),
        clock=lambda: NOW / 1000,
        progress_store=progress,
    )


async def tick_and_sweep(s: Scorer, consumer: Consumer) -> float | None:
    """One decay tick: the limit of partition 0, and its sweep up to it."""
    until = (await s.sweep_limits(consumer, [0], now_ms=NOW))[0]
    if until is not None:
        await s.sweep_partition(0, until, now_ms=NOW)
    return until


def stored_state(store: MemoryStore) -> CustomerState:
    raw = store.records[CID].state
    assert raw is not None
    return decode_state(raw, MODEL)


def test_a_successor_with_a_backlog_sweeps_no_further_than_the_events_processed() -> None:
    assert expected_partition(CID, 1) == 0
    store, progress = MemoryStore(), Progress()

    async def run() -> tuple[float | None, float | None]:
        first = scorer(store, progress)
        # idle and caught up (an empty partition) before the history is produced: its
        # progress is the wall clock while that lasts
        assert await tick_and_sweep(first, Consumer(high=0)) == NOW
        # the history arrives; the worker processes the first messages and ticks, then stops
        await first.process([message(o) for o in range(DONE)])
        backlog = Consumer(high=len(HISTORY), committed=DONE)
        assert await tick_and_sweep(first, backlog) == HISTORY[DONE - 1][2]
        # its successor ticks before it reads the backlog (the order is not defined)
        second = scorer(store, progress)
        until = await tick_and_sweep(second, backlog)
        await second.process([message(o) for o in range(DONE, len(HISTORY))])
        return until, progress.stored[0].input_ms

    until, stored = asyncio.run(run())
    # the successor is not caught up: it goes on from the event time processed, as its
    # predecessor would have, never from a wall clock its predecessor saw while idle
    assert until == HISTORY[DONE - 1][2], (until, NOW)
    assert stored is not None and stored < NOW

    raws = [message(o).value or b"" for o in range(len(HISTORY))]
    want = fold(raws, MODEL, at_ms=NOW)[CID].state
    got = stored_state(store)
    assert want is not None and got.events_applied == len(HISTORY)
    assert not state_diff(got, want, MODEL, horizon_ms=NOW, customer_id=CID)
