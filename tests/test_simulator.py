"""The traffic simulator: deterministic, realistic per persona, and within the event contract."""

from __future__ import annotations

import asyncio
import io
import itertools
import statistics
import time
from collections import Counter, defaultdict

import orjson
import pytest

from stream_app.devkit.simulator import (
    DAY_MS,
    DEFAULT_MIX,
    EVENT_TYPES,
    PERSONAS,
    SimConfig,
    SimEvent,
    history,
    inject_duplicates_and_disorder,
    live,
    paced,
    personas,
    read_jsonl,
    take_events,
    write_jsonl,
)

END_MS = 1_750_000_000_000  # 2025-06-15T15:06:40Z
CFG = SimConfig.ending(END_MS, days=90, customers=400, seed=11)
WHITESPACE_OR_CONTROL = {chr(c) for c in range(33)} | {"\x7f"}


@pytest.fixture(scope="module")
def events() -> list[SimEvent]:
    return list(history(CFG))


@pytest.fixture(scope="module")
def by_persona(events: list[SimEvent]) -> dict[str, list[SimEvent]]:
    who = personas(CFG)
    out: dict[str, list[SimEvent]] = defaultdict(list)
    for e in events:
        out[who[e["customer_id"]]].append(e)
    return out


class FakeClock:
    def __init__(self, start_s: float, step_s: float) -> None:
        self.t, self.step = start_s, step_s

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_same_seed_same_events_and_different_seed_different_events() -> None:
    cfg = SimConfig.ending(END_MS, days=30, customers=50, seed=3)
    first = list(history(cfg))
    assert first == list(history(cfg))
    assert orjson.dumps(first) == orjson.dumps(list(history(cfg)))
    assert take_events(cfg, 25) == first[:25]
    other = list(history(SimConfig.ending(END_MS, days=30, customers=50, seed=4)))
    strip = [{k: v for k, v in e.items() if k != "event_id"} for e in first]
    assert strip != [{k: v for k, v in e.items() if k != "event_id"} for e in other]


def test_a_customer_keeps_its_behaviour_when_more_customers_are_added() -> None:
    small = SimConfig.ending(END_MS, days=30, customers=20, seed=5)
    large = SimConfig.ending(END_MS, days=30, customers=60, seed=5)
    assert personas(large).items() >= personas(small).items()

    def of(cfg: SimConfig) -> list[tuple[object, ...]]:
        return [
            (e["timestamp"], e["type"]) for e in history(cfg) if e["customer_id"] == "cust-000007"
        ]

    assert of(small) == of(large)


def test_history_is_time_ordered_within_the_window_with_unique_ids(events: list[SimEvent]) -> None:
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert CFG.start_ms <= stamps[0] and stamps[-1] <= CFG.end_ms
    assert len({e["event_id"] for e in events}) == len(events)
    assert events[0]["event_id"] == "sim-11-0"


def test_every_event_satisfies_the_contract(events: list[SimEvent]) -> None:
    assert set(EVENT_TYPES) >= {e["type"] for e in events}
    for e in events:
        assert set(e) == {"event_id", "customer_id", "type", "timestamp", "properties"}
        for key in ("event_id", "customer_id"):
            assert isinstance(e[key], str) and 1 <= len(e[key]) <= 128
            assert not set(e[key]) & WHITESPACE_OR_CONTROL
        assert type(e["timestamp"]) is int
        assert isinstance(e["properties"], dict)
        if e["type"] == "nps_response":
            score = e["properties"]["score"]
            assert type(score) is int and 0 <= score <= 10


def test_every_event_parses_with_the_scoring_core(events: list[SimEvent]) -> None:
    from scoring.events import parse_event
    from scoring.model import load_default_model

    model = load_default_model()
    live_events = list(
        itertools.islice(live(CFG, rate=50, clock=FakeClock(END_MS / 1000, 0.02)), 300)
    )
    for e in events + live_events:
        parse_event(orjson.dumps(e), model, now_ms=max(END_MS, e["timestamp"]) + 1)  # no raise


def test_every_persona_appears_and_volumes_are_realistic(events: list[SimEvent]) -> None:
    assert set(personas(CFG).values()) == set(PERSONAS) == set(DEFAULT_MIX)
    per_customer = Counter(e["customer_id"] for e in events)
    monthly = [per_customer.get(c, 0) / 3 for c in personas(CFG)]
    assert 5 <= statistics.mean(monthly) <= 30
    assert max(monthly) >= 4 * statistics.median(monthly)  # skew: some very active customers
    assert len(set(EVENT_TYPES) - {e["type"] for e in events}) == 0


def test_mix_selects_personas_and_is_validated() -> None:
    cfg = SimConfig.ending(END_MS, days=10, customers=30, mix={"detractor": 1.0, "lapsing": 0})
    assert set(personas(cfg).values()) == {"detractor"}
    with pytest.raises(ValueError, match="mix"):
        SimConfig.ending(END_MS, mix={"nobody": 1.0})
    with pytest.raises(ValueError, match="mix"):
        SimConfig.ending(END_MS, mix={"detractor": 0.0})
    with pytest.raises(ValueError, match="end_ms"):
        SimConfig(start_ms=END_MS, end_ms=END_MS)
    with pytest.raises(ValueError, match="customers"):
        SimConfig.ending(END_MS, customers=0)


def test_lapsing_customers_cool_down(by_persona: dict[str, list[SimEvent]]) -> None:
    third = (CFG.end_ms - CFG.start_ms) // 3
    first: Counter[str] = Counter()
    last: Counter[str] = Counter()
    for e in by_persona["lapsing"]:
        if e["timestamp"] < CFG.start_ms + third:
            first[e["customer_id"]] += 1
        elif e["timestamp"] >= CFG.end_ms - third:
            last[e["customer_id"]] += 1
    assert sum(last.values()) < sum(first.values()) / 10
    for customer in first | last:
        assert last[customer] < first[customer]


def test_new_customers_warm_up(by_persona: dict[str, list[SimEvent]]) -> None:
    third = (CFG.end_ms - CFG.start_ms) // 3
    early = sum(e["timestamp"] < CFG.start_ms + third for e in by_persona["new_customer"])
    late = sum(e["timestamp"] >= CFG.end_ms - third for e in by_persona["new_customer"])
    assert late > 5 * early


def test_web_active_loyalty_ignorer_visits_but_never_earns(
    by_persona: dict[str, list[SimEvent]],
) -> None:
    mine = by_persona["web_active_loyalty_ignorer"]
    recent = [e for e in mine if e["timestamp"] >= CFG.end_ms - 30 * DAY_MS]
    assert sum(e["type"] == "web_visit" for e in recent) > 100
    assert not [e for e in mine if e["type"] in ("loyalty_earn", "loyalty_redeem")]
    joins = Counter(e["customer_id"] for e in mine if e["type"] == "loyalty_join")
    assert set(joins.values()) == {1}
    assert all(
        e["timestamp"] < CFG.start_ms + 3 * DAY_MS for e in mine if e["type"] == "loyalty_join"
    )


def test_persona_specific_behaviour(by_persona: dict[str, list[SimEvent]]) -> None:
    def nps(persona: str) -> set[int]:
        return {
            e["properties"]["score"] for e in by_persona[persona] if e["type"] == "nps_response"
        }

    assert nps("loyal_promoter") <= {9, 10} and nps("loyal_promoter")
    assert nps("detractor") <= set(range(7)) and nps("detractor")
    assert {e["type"] for e in by_persona["newsletter_reader"]} == {
        "email_open",
        "email_click",
        "email_unsubscribe",
    }
    redeems_per_day = Counter(
        (e["customer_id"], e["timestamp"] // DAY_MS)
        for e in by_persona["bargain_hunter"]
        if e["type"] == "loyalty_redeem"
    )
    assert max(redeems_per_day.values()) >= 3  # bursts


def test_nothing_follows_an_unsubscribe(events: list[SimEvent]) -> None:
    unsubscribed_at = {
        e["customer_id"]: e["timestamp"] for e in events if e["type"] == "email_unsubscribe"
    }
    assert len(unsubscribed_at) >= 10
    assert (
        Counter(e["customer_id"] for e in events if e["type"] == "email_unsubscribe").most_common(
            1
        )[0][1]
        == 1
    )
    for e in events:
        if e["customer_id"] in unsubscribed_at:
            assert e["timestamp"] <= unsubscribed_at[e["customer_id"]]


def test_live_events_are_now_events_that_keep_persona_behaviour(events: list[SimEvent]) -> None:
    clock = FakeClock(END_MS / 1000, 0.05)
    stream = list(itertools.islice(live(CFG, rate=20, clock=clock), 2000))
    again = list(itertools.islice(live(CFG, rate=20, clock=FakeClock(END_MS / 1000, 0.05)), 2000))
    assert stream == again
    expected = [END_MS + 100 + 50 * n for n in range(2000)]  # t0 read first, then one per event
    assert [e["timestamp"] for e in stream] == pytest.approx(expected, abs=1)
    assert len({e["event_id"] for e in stream}) == len(stream)
    assert not {e["event_id"] for e in stream} & {e["event_id"] for e in events}
    who = personas(CFG)
    seen = Counter(who[e["customer_id"]] for e in stream)
    assert "lapsing" not in seen  # lapsed long ago
    assert {"loyal_promoter", "web_active_loyalty_ignorer", "new_customer"} <= set(seen)
    left = {e["customer_id"] for e in events if e["type"] == "email_unsubscribe"}
    assert not left & {e["customer_id"] for e in stream}
    unsubs = [e for e in stream if e["type"] == "email_unsubscribe"]
    for u in unsubs:  # a live unsubscribe is that customer's last event
        later = [
            e
            for e in stream
            if e["customer_id"] == u["customer_id"] and e["timestamp"] > u["timestamp"]
        ]
        assert not later
    with pytest.raises(ValueError, match="rate"):
        next(live(CFG, rate=0))


def test_paced_keeps_the_rate() -> None:
    async def collect() -> list[int]:
        return [x async for x in paced(range(11), rate=200.0)]

    started = time.monotonic()
    assert asyncio.run(collect()) == list(range(11))
    assert time.monotonic() - started >= 10 / 200 * 0.9


def test_jsonl_round_trip(events: list[SimEvent]) -> None:
    buf = io.BytesIO()
    assert write_jsonl(events[:500], buf) == 500
    raw = buf.getvalue()
    assert raw.count(b"\n") == 500
    lines = list(read_jsonl(io.BytesIO(b"\n" + raw.replace(b"\n", b"\n  \n", 3) + b"\n\n")))
    assert [orjson.loads(line) for line in lines] == events[:500]


def test_duplicates_and_disorder_keep_every_event_plus_duplicates(events: list[SimEvent]) -> None:
    original = events[:2000]
    messy = inject_duplicates_and_disorder(original, duplicate_rate=0.1, disorder_rate=0.2, seed=1)
    before, after = Counter(e["event_id"] for e in original), Counter(e["event_id"] for e in messy)
    extra = after - before
    assert before - after == Counter()  # nothing lost
    assert 100 <= sum(extra.values()) <= 300 and set(extra.values()) == {1}
    by_id = {e["event_id"]: e for e in original}
    assert all(e == by_id[e["event_id"]] for e in messy)  # duplicates are identical copies
    stamps = [e["timestamp"] for e in messy]
    assert stamps != sorted(stamps)
    assert messy == inject_duplicates_and_disorder(
        original, duplicate_rate=0.1, disorder_rate=0.2, seed=1
    )
    assert (
        inject_duplicates_and_disorder(original, duplicate_rate=0, disorder_rate=0, seed=1)
        == original
    )
    with pytest.raises(ValueError, match="rate"):
        inject_duplicates_and_disorder(original, duplicate_rate=1.5, disorder_rate=0, seed=1)
