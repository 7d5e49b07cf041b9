"""Batches and decay sweeps interleaved, without a broker or Redis: what the offline fold
can be compared with.

``tests/integration/pipeline/test_state.py`` sends customers' events interleaved and
locally disordered, so each partition's event-time progress runs far ahead of most
customers' next events. A worker that takes them in several batches (a loaded machine,
a slow producer) ticks in between, and its sweep fires crossings ahead of those events,
which then apply late. Here the batches are small and a tick follows every one.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from scoring import Model, decode_state, load_default_model, load_model
from stream_app.devkit import simulator
from stream_app.messages import Record, Topics
from stream_app.worker.scorer import Scorer
from tests.integration.workers import capless_model_file, dumps
from tests.support.diff import state_diffs
from tests.support.fakes import Collect, MemoryStore
from tests.support.fold import fold

END = 1_700_000_000_000
NOW = END + 60_000
TOPICS = Topics("in", "in.by-customer", "out", "dlq", 1)  # (one partition: no watermarks)
BATCH = 50


class Backlog:
    """A consumer that always has messages left: progress is the event time read."""

    def assignment(self) -> list[tuple[str, int]]:
        return [(TOPICS.input, 0), (TOPICS.by_customer, 0)]

    def highwater(self, topic: str, partition: int, /) -> int | None:
        return 1_000_000 if topic == TOPICS.input else 0

    def committed(self, topic: str, partition: int, /) -> int | None:
        return None


def interleaved() -> list[dict[str, Any]]:
    """As the integration test builds them: each customer's events with copies and
    swapped neighbours, the customers interleaved."""
    config = simulator.SimConfig.ending(END, 30, customers=30, seed=5)
    per_customer: dict[str, list[dict[str, Any]]] = {}
    for doc in simulator.history(config):
        per_customer.setdefault(doc["customer_id"], []).append(dict(doc))
    streams = [
        simulator.inject_duplicates_and_disorder(
            evs, duplicate_rate=0.15, disorder_rate=0.3, seed=i
        )
        for i, evs in enumerate(per_customer.values())
    ]
    return [d for group in itertools.zip_longest(*streams) for d in group if d is not None]


def score_with_sweeps(model: Model, docs: list[dict[str, Any]], batch: int) -> MemoryStore:
    """Batches of ``batch`` messages, each followed by a decay tick and its sweep."""
    store = MemoryStore()
    scorer = Scorer(
        model=model, topics=TOPICS, store=store, publisher=Collect(), clock=lambda: NOW / 1000
    )
    records = [
        Record(TOPICS.input, 0, i, d["customer_id"].encode(), dumps(d)) for i, d in enumerate(docs)
    ]

    async def run() -> None:
        for lo in range(0, len(records), batch):
            await scorer.process(records[lo : lo + batch])
            until = (await scorer.sweep_limits(Backlog(), [0], now_ms=NOW))[0]
            assert until is not None
            await scorer.sweep_partition(0, until, now_ms=NOW)

    asyncio.run(run())
    return store


def differing(model: Model, batch: int = BATCH) -> dict[str, list[str]]:
    """Customers whose stored state differs from the offline fold's (both settled to one
    horizon, compared as the integration test does)."""
    docs = interleaved()
    assert len(docs) > 5 * BATCH
    store = score_with_sweeps(model, docs, batch)
    expected = {cid: f.state for cid, f in fold(map(dumps, docs), model, at_ms=NOW).items()}
    stored = {
        cid: decode_state(r.state, model) for cid, r in store.records.items() if r.state is not None
    }
    assert set(stored) == set(expected)
    return state_diffs(stored, expected, model, horizon_ms=NOW, any_order=True)


def test_without_caps_sweeps_between_batches_change_no_value(tmp_path: Path) -> None:
    model = load_model(capless_model_file(tmp_path))
    assert not differing(model)


def test_with_caps_a_sweep_ahead_of_late_events_changes_what_counts() -> None:
    # the documented rule, and why the integration test compares the capless model: a late
    # event of a capped type older than the cap window before the clock adds nothing
    diffs = differing(load_default_model())
    assert diffs, "no customer met a crossing fired ahead of its events"
    assert all(not d.startswith("events_applied") for ds in diffs.values() for d in ds)


def test_in_one_batch_caps_change_nothing_either() -> None:
    # (as an unloaded machine mostly runs the integration test: no tick in between)
    assert not differing(load_default_model(), batch=len(interleaved()))
