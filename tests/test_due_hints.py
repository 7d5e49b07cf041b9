"""The due index gets a lower bound of each customer's next crossing, reusing the time
written last when the new state is provably quiet until then (stream_app.worker.batch.DueHints).

The end-to-end guarantee (the sweep fires every crossing at its exact time, as an
offline pass does) is the live-equals-offline property of tests/scoring/test_firing_worker.py,
which runs the same BatchProcessor and sweep; these pin the hint itself."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence

import orjson
import pytest

import scoring
from stream_app.messages import Record, Topics
from stream_app.store.records import CustomerRecord
from stream_app.worker import batch as pipeline
from stream_app.worker.batch import BatchProcessor
from stream_app.worker.duehints import DueHints
from stream_app.worker.scorer import Scorer
from tests.support.fakes import Collect, MemoryStore

MODEL = scoring.load_default_model()
T0 = 1_700_000_000_000
HOUR, DAY = 3_600_000, 86_400_000
TOPICS = Topics("in", "in.by-customer", "out", "dlq", 1)


class Records(MemoryStore):
    """The records, every write, and the offset of the next input message."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0


def _processor(store: Records, horizon_ms: float = 0.0) -> BatchProcessor:
    """Horizon 0 by default: the tests of the hints see exact crossings otherwise."""
    return BatchProcessor(
        due_horizon_ms=horizon_ms,
        model=MODEL,
        topics=TOPICS,
        store=store,
        publisher=Collect(),
        explain_events=0,
        clock=lambda: (T0 + 400 * DAY) / 1000,
    )


def _feed(processor: BatchProcessor, events: Sequence[tuple[str, int]], score: int = 0) -> None:
    """One batch per event, at the next offsets of partition 0."""
    store = processor.store
    assert isinstance(store, Records)
    for kind, at in events:
        doc: dict[str, object] = {
            "event_id": f"e-{store.offset}", "customer_id": "c-1", "type": kind, "timestamp": at
        }  # fmt: skip
        if kind == "nps_response":
            doc["properties"] = {"score": score}
        record = Record("in", 0, store.offset, b"c-1", orjson.dumps(doc))
        store.offset += 1
        asyncio.run(processor.process([record]))


def _state(store: Records, cid: str = "c-1") -> scoring.CustomerState:
    raw = store.records[cid].state
    assert raw is not None
    return scoring.decode_state(raw, MODEL)


WARM = [("webinar_attended", T0), ("webinar_attended", T0 + HOUR), ("review_submitted", T0 + HOUR)]


def test_a_quiet_customer_gets_the_time_written_last_and_it_stays_a_lower_bound() -> None:
    store = Records()
    processor = _processor(store)
    _feed(processor, WARM)
    first = store.writes[-1].due_at_ms
    assert first is not None and first == scoring.next_crossing(_state(store), MODEL)
    _feed(processor, [("email_open", T0 + 2 * HOUR)])  # more activity: the crossing moves later
    written, exact = store.writes[-1].due_at_ms, scoring.next_crossing(_state(store), MODEL)
    assert written == first
    assert exact is not None and written < exact


def test_a_hint_past_the_new_crossing_is_not_used() -> None:
    store = Records()
    processor = _processor(store)
    _feed(processor, WARM)
    far = T0 + 100 * DAY  # later than the crossing: not a lower bound, must not be written
    processor.due_hints.set("c-1", far)
    _feed(processor, [("email_open", T0 + 2 * HOUR)])
    written, exact = store.writes[-1].due_at_ms, scoring.next_crossing(_state(store), MODEL)
    assert exact is not None and exact < far
    assert written == exact
    assert processor.due_hints.get("c-1") == exact


def test_a_customer_who_never_crosses_is_shown_so_without_the_root_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Records()
    processor = _processor(store)

    def no_search(state: scoring.CustomerState, model: scoring.Model) -> float | None:
        raise AssertionError("the root search ran")

    monkeypatch.setattr(pipeline, "next_crossing", no_search)
    _feed(processor, [("email_open", T0)])
    assert store.writes[-1].due_at_ms is None
    monkeypatch.undo()
    assert scoring.next_crossing(_state(store), MODEL) is None
    assert processor.due_hints.get("c-1") == math.inf


def test_a_crossing_beyond_the_horizon_gets_the_horizon_without_the_root_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Records()
    processor = _processor(store, horizon_ms=HOUR)
    _feed(processor, WARM[:2])
    exact = scoring.next_crossing(_state(store), MODEL)
    assert exact is not None and exact > _state(store).clock_ms + HOUR  # (the premise)

    def no_search(state: scoring.CustomerState, model: scoring.Model) -> float | None:
        raise AssertionError("the root search ran")

    monkeypatch.setattr(pipeline, "next_crossing", no_search)
    _feed(processor, [("email_open", T0 + 2 * HOUR)])
    state = _state(store)
    assert store.writes[-1].due_at_ms == state.clock_ms + HOUR
    assert processor.due_hints.get("c-1") == state.clock_ms + HOUR


def test_a_crossing_within_the_horizon_is_written_exactly() -> None:
    store = Records()
    processor = _processor(store, horizon_ms=400 * DAY)
    _feed(processor, WARM)
    assert store.writes[-1].due_at_ms == scoring.next_crossing(_state(store), MODEL)


@pytest.mark.parametrize("horizon_ms", [0.0, HOUR, DAY])
def test_every_written_due_time_is_a_lower_bound_of_the_next_crossing(horizon_ms: float) -> None:
    kinds = sorted(MODEL.event_types)
    reused = exact_written = bounded = 0
    for seed in range(12):
        rng = random.Random(seed)
        store = Records()
        processor = _processor(store, horizon_ms)
        at = T0
        for _ in range(40):
            at += rng.choice([HOUR, DAY, 3 * DAY, 9 * DAY])
            hint = processor.due_hints.get("c-1")
            _feed(processor, [(rng.choice(kinds), at)], score=rng.randrange(11))
            written, state = store.writes[-1].due_at_ms, _state(store)
            exact = scoring.next_crossing(state, MODEL)
            if exact is None:
                assert written is None or written >= state.clock_ms  # (the sweep drops it)
            else:
                assert written is not None and state.clock_ms <= written <= exact
            reused += written is not None and written == hint and written != exact
            exact_written += written is not None and written == exact
            new_bound = written != hint and written == state.clock_ms + horizon_ms
            bounded += written is not None and new_bound and written != exact
    assert reused > 0 and exact_written > 0  # every path ran
    assert (bounded > 0) == (horizon_ms > 0)


def test_the_hints_are_bounded_and_dropped_on_a_rebalance() -> None:
    hints = DueHints(capacity=3)
    for n in range(3):
        hints.set(f"c{n}", float(n))
    hints.set("c1", 10.0)  # a known customer: no eviction
    assert len(hints) == 3 and hints.get("c1") == 10.0
    hints.set("c3", 3.0)  # full: start again rather than grow
    assert len(hints) == 1 and hints.get("c3") == 3.0
    hints.discard("c3")
    assert hints.get("c3") is None
    scorer = Scorer(model=MODEL, topics=TOPICS, store=Records(), publisher=Collect())
    scorer.hints.set("c-1", 5.0)
    scorer.progress.advance({("in", 0): 3}, {0: 5.0})
    scorer.revoked([0])
    assert len(scorer.hints) == 0
    assert scorer.progress.event_time(0) is None and scorer.progress.last_offset("in", 0) is None


def test_the_record_this_worker_wrote_skips_the_pre_event_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = Records()
    processor = _processor(store)
    _feed(processor, WARM)
    version = store.records["c-1"].fence
    calls: list[float | None] = []
    real_apply = pipeline.apply

    def spy(*args: object, **kwargs: object) -> scoring.Applied:
        calls.append(kwargs.get("quiet_before_ms"))  # type: ignore[arg-type]
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]

    expected = processor.due_hints.quiet_before("c-1", version)
    assert expected is not None and expected > T0 + 2 * HOUR  # the time written for it
    monkeypatch.setattr(pipeline, "apply", spy)
    _feed(processor, [("email_open", T0 + 2 * HOUR)])
    assert calls == [expected]
    # a record written by someone else (another fence token): no claim about its state
    store.records["c-1"] = CustomerRecord(
        store.records["c-1"].version + 1, store.records["c-1"].marks, store.records["c-1"].state
    )
    _feed(processor, [("email_open", T0 + 3 * HOUR - 1)])
    assert calls[1] is None
    # the same version number again, written elsewhere (after a failover lost the record
    # this worker wrote): the write id tells them apart
    written = store.records["c-1"]
    store.records["c-1"] = CustomerRecord(
        written.version, written.marks, written.state, token=f"{written.version}.elsewhere"
    )
    assert processor.due_hints.quiet_before("c-1", written.fence) is not None
    _feed(processor, [("email_open", T0 + 3 * HOUR)])
    assert calls[2] is None
