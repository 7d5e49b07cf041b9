"""Applying events (issue §3, §4, §5, §6): every rule, one test at a time.

The small model (conftest): dimensions a (half-life 1 day), b (3 days), c (10 days);
tiers cold 0, warm 10, hot 30 with hysteresis 0.2 (warm is left below 8, hot below 24).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest

from scoring.apply import Applied, NpsResponse, apply
from scoring.changes import Change, change_id
from scoring.crossing import advance, next_crossing
from scoring.errors import InvalidEvent
from scoring.events import Event
from scoring.model import Model
from scoring.state import CustomerState, fingerprint, new_state, values_at

T0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z
DAY = 86_400_000
HOUR = 3_600_000

EventFactory = Callable[..., Event]


def run(model: Model, events: list[Event], state: CustomerState | None = None) -> list[Applied]:
    results = []
    for e in events:
        result = apply(state, e, model)
        results.append(result)
        state = result.state
    return results


def summary(changes: tuple[Change, ...]) -> list[tuple[object, ...]]:
    return [(c.kind, c.name, c.from_tier, c.to_tier, c.entered, c.cause) for c in changes]


def value(state: CustomerState, model: Model, dim: str) -> float:
    return values_at(state, model, state.clock_ms).dimensions[dim]


def test_first_event_starts_silently_then_is_evaluated(model: Model, event: EventFactory) -> None:
    result = apply(None, event("pc", T0, "first"), model)
    assert result.status == "applied" and result.nps is None
    state = result.state
    assert state.clock_ms == T0 and state.last_event_ms == T0 and state.events_applied == 1
    assert value(state, model, "c") == 3.0
    assert state.tier_name(model) == "cold"
    # segments true after the first event are "entered"; no tier change below warm
    assert summary(result.changes) == [
        ("segment", "score_band", None, None, True, "event"),
        ("segment", "quiet_pa", None, None, True, "event"),  # never had pa: infinitely long
        ("segment", "active", None, None, True, "event"),
    ]
    assert all(c.occurred_at_ms == T0 and c.cause_event_id == "first" for c in result.changes)
    assert all(
        c.score == 3.0 and c.dimensions == {"a": 0, "b": 0, "c": 3.0} for c in result.changes
    )


def test_first_event_landing_high_moves_up_several_tiers_at_once(
    model: Model, event: EventFactory
) -> None:
    result = apply(new_state(), event("big", T0), model)
    tiers = [c for c in result.changes if c.kind == "tier"]
    assert summary(tuple(tiers)) == [("tier", "hot", "cold", "hot", True, "event")]
    assert tiers[0].cloudevent_type == "engagement.tier.changed"


def test_points_decay_with_the_dimension_half_life(model: Model, event: EventFactory) -> None:
    s1 = apply(None, event("pa", T0), model).state
    s2 = apply(s1, event("pb", T0 + DAY), model).state
    # (a decay crossing of a_high in between splits the decay in two: equal to rounding)
    assert value(s2, model, "a") == pytest.approx(2.5, rel=1e-15)
    assert value(s2, model, "b") == 4.0
    later = values_at(s2, model, T0 + 4 * DAY)
    assert later.dimensions["a"] == pytest.approx(5 / 16, rel=1e-15)
    assert later.dimensions["b"] == 2.0 and later.dimensions["c"] == 0.0
    assert later.score == pytest.approx(5 / 16 + 2.0, rel=1e-15)


def test_negative_points_and_scores_below_zero(model: Model, event: EventFactory) -> None:
    result = apply(None, event("nb", T0), model)
    assert values_at(result.state, model, T0).score == -4.0
    assert result.state.tier_name(model) == "cold"
    assert "promoter_or_b" in result.state.segment_names(model)  # dimension.b < -1


def test_tier_up_and_hysteresis_down(make_model: Callable[..., Model], event: EventFactory) -> None:
    model = make_model(
        dimensions={"c": {"half_life_days": 1e9}},  # no decay: only events move the score
        events={"up": {"points": 1, "dimension": "c"}, "down": {"points": -1, "dimension": "c"}},
        segments={},
    )
    state: CustomerState | None = None

    def go(kind: str, n: int) -> tuple[float, str]:
        nonlocal state
        for _ in range(n):
            state = apply(state, event(kind, T0), model).state
        assert state is not None
        return values_at(state, model, T0).score, state.tier_name(model)

    assert go("up", 9) == (9, "cold")
    assert go("up", 1) == (10, "warm")  # up as soon as the threshold is reached
    assert go("down", 2) == (8, "warm")  # 8 = 10 * (1 - 0.2): not below, stays
    assert go("down", 1) == (7, "cold")  # below 8: leaves
    assert go("up", 2) == (9, "cold")  # the way up has no hysteresis
    assert go("up", 21) == (30, "hot")
    assert go("down", 6) == (24, "hot")
    assert go("down", 1) == (23, "warm")  # to the tier the score qualifies for


def test_an_event_can_drop_several_tiers_at_once(
    make_model: Callable[..., Model], event: EventFactory
) -> None:
    model = make_model(
        events={
            "big": {"points": 40, "dimension": "c"},
            "crash": {"points": -35, "dimension": "c"},
        },
        segments={},
    )
    s = apply(None, event("big", T0), model).state
    r = apply(s, event("crash", T0), model)
    assert summary(tuple(c for c in r.changes if c.kind == "tier")) == [
        ("tier", "cold", "hot", "cold", False, "event")
    ]


def test_late_events_add_points_decayed_to_the_clock(model: Model, event: EventFactory) -> None:
    s = apply(None, event("pb", T0 + 3 * DAY), model).state
    r = apply(s, event("pb", T0), model)  # three days (one b half-life) late
    assert r.state.clock_ms == T0 + 3 * DAY  # the clock does not move back
    assert value(r.state, model, "b") == 4.0 + 2.0
    assert r.state.last_event_ms == T0 + 3 * DAY
    # same values as if it had arrived in order
    in_order = run(model, [event("pb", T0), event("pb", T0 + 3 * DAY)])[-1].state
    assert value(in_order, model, "b") == pytest.approx(6.0, rel=1e-12)


def test_late_event_changes_occur_at_the_clock(model: Model, event: EventFactory) -> None:
    s = apply(None, event("pc", T0 + DAY), model).state
    r = apply(s, event("pa", T0 + DAY - HOUR), model)
    entered = [c for c in r.changes if c.name == "a_high"]
    assert entered and entered[0].occurred_at_ms == T0 + DAY
    assert entered[0].dimensions["a"] == pytest.approx(5 * 2 ** (-1 / 24))


def test_caps_per_utc_day_of_event_time(model: Model, event: EventFactory) -> None:
    day_end = T0 + DAY - 1
    results = run(
        model,
        [
            event("capped", T0 + HOUR),
            event("capped", T0 + 2 * HOUR),
            event("capped", day_end, "third"),  # same UTC day: capped
            event("capped", T0 + DAY),  # next UTC day: counts again
        ],
    )
    assert [r.status for r in results] == ["applied", "applied", "capped", "applied"]
    third = results[2]
    before = results[1].state
    assert third.state.values == tuple(
        v for v in values_at(before, model, day_end).dimensions.values()
    )  # nothing added, only decay to the new clock
    assert third.state.events_applied == 3
    assert fingerprint("third") in third.state.recent_ids
    assert third.state.last_seen_of(model, "any") == day_end
    assert apply(third.state, event("capped", day_end, "third"), model).status == "duplicate"


def test_caps_only_count_the_kept_window(model: Model, event: EventFactory) -> None:
    s = apply(None, event("pc", T0 + 10 * DAY), model).state
    window = apply(s, event("capped", T0 + 7 * DAY), model)  # 3 days before the clock's day
    assert window.status == "applied"
    too_old = apply(window.state, event("capped", T0 + 7 * DAY - 1), model)  # 4 days before
    assert too_old.status == "capped"
    assert too_old.state.values == window.state.values
    # counters of days that left the window are pruned
    later = apply(window.state, event("pc", T0 + 20 * DAY), model).state
    assert later.caps == ()


def test_the_kept_window_is_the_models_cap_window_days(
    make_model: Callable[..., Model], event: EventFactory
) -> None:
    """A weekly import: with ``cap_window_days = 8`` a capped type's event 8 days before
    the clock's day still counts against its own day; with 0 only the clock's day does."""
    head = {"name": "small", "version": 3, "half_life_days": 10}
    weekly = make_model(model={**head, "cap_window_days": 8})
    s = apply(None, event("pc", T0 + 10 * DAY), weekly).state
    assert apply(s, event("capped", T0 + 2 * DAY), weekly).status == "applied"
    assert apply(s, event("capped", T0 + 2 * DAY - 1), weekly).status == "capped"
    today_only = make_model(model={**head, "cap_window_days": 0})
    s = apply(None, event("pc", T0 + 10 * DAY), today_only).state
    assert apply(s, event("capped", T0 + 10 * DAY), today_only).status == "applied"
    assert apply(s, event("capped", T0 + 10 * DAY - 1), today_only).status == "capped"


def test_uncapped_types_are_never_capped(model: Model, event: EventFactory) -> None:
    results = run(model, [event("pc", T0) for _ in range(50)])
    assert {r.status for r in results} == {"applied"}
    assert results[-1].state.caps == ()


def test_duplicates_change_nothing(model: Model, event: EventFactory) -> None:
    first = apply(None, event("nps_response", T0, "dup", nps_score=10), model)
    again = apply(first.state, event("nps_response", T0 + HOUR, "dup", nps_score=0), model)
    assert again.status == "duplicate"
    assert again.state is first.state
    assert again.changes == () and again.nps is None


def test_dedup_memory_is_bounded(model: Model, event: EventFactory) -> None:
    state = apply(None, event("pc", T0, "old"), model, dedup_memory=3).state
    for i in range(3):
        state = apply(state, event("pc", T0, f"new{i}"), model, dedup_memory=3).state
    assert len(state.recent_ids) == 3 and fingerprint("old") not in state.recent_ids
    assert apply(state, event("pc", T0, "new0"), model, dedup_memory=3).status == "duplicate"
    assert apply(state, event("pc", T0, "old"), model, dedup_memory=3).status == "applied"
    none = apply(None, event("pc", T0, "x"), model, dedup_memory=0).state
    assert none.recent_ids == ()
    with pytest.raises(ValueError, match="dedup_memory"):
        apply(None, event("pc", T0), model, dedup_memory=-1)


def test_default_dedup_memory_is_16(model: Model, event: EventFactory) -> None:
    state = None
    for i in range(20):
        state = apply(state, event("pc", T0, f"id{i}"), model).state
    assert state is not None and len(state.recent_ids) == 16


def test_nps_latest_response_by_event_time(model: Model, event: EventFactory) -> None:
    r1 = apply(None, event("nps_response", T0 + DAY, nps_score=9), model)
    assert r1.nps == NpsResponse(day="2023-11-15", category="promoter", tier="cold", score=9)
    assert r1.state.nps_category == "promoter"
    assert "promoter_or_b" in r1.state.segment_names(model)
    # an older answer arriving late is counted (returned) but does not replace the latest
    r2 = apply(r1.state, event("nps_response", T0, nps_score=2), model)
    assert r2.nps == NpsResponse("2023-11-14", "detractor", "cold", 2)
    assert (r2.state.nps_score, r2.state.nps_at_ms) == (9, T0 + DAY)
    # a newer answer does
    r3 = apply(r2.state, event("nps_response", T0 + 2 * DAY, nps_score=7), model)
    assert r3.state.nps_category == "passive"
    assert "promoter_or_b" not in r3.state.segment_names(model)
    assert [c.name for c in r3.changes if not c.entered] == ["promoter_or_b"]


def test_nps_tier_is_the_tier_before_the_response_points(
    make_model: Callable[..., Model], event: EventFactory
) -> None:
    model = make_model(
        events={
            "pc": {"points": 9, "dimension": "c"},
            "nps_response": {"points": 5, "dimension": "c"},
        },
        segments={},
    )
    s = apply(None, event("pc", T0), model).state  # 9: cold
    r = apply(s, event("nps_response", T0, nps_score=10), model)  # 14: warm
    assert r.nps is not None and r.nps.tier == "cold"
    assert r.state.tier_name(model) == "warm"


def test_nps_tier_after_pending_decay_crossings(model: Model, event: EventFactory) -> None:
    s = apply(None, event("big", T0), model).state  # hot, c decays with 10-day half-life
    r = apply(s, event("nps_response", T0 + 30 * DAY, nps_score=8), model)  # 40/8 = 5: cold
    assert r.nps is not None and r.nps.tier == "cold"
    decay = [c for c in r.changes if c.cause == "decay" and c.kind == "tier"]
    assert [(c.from_tier, c.to_tier) for c in decay] == [("hot", "warm"), ("warm", "cold")]


def test_pending_crossings_are_applied_first_at_their_exact_times(
    model: Model, event: EventFactory
) -> None:
    s = apply(None, event("big", T0), model).state
    r = apply(s, event("pc", T0 + 40 * DAY), model)
    decay = [c for c in r.changes if c.cause == "decay"]
    assert decay and all(T0 < c.occurred_at_ms <= T0 + 40 * DAY for c in decay)
    assert [c.occurred_at_ms for c in decay] == sorted(c.occurred_at_ms for c in decay)
    hot_to_warm = next(c for c in decay if c.kind == "tier")
    # 40 * 2^(-x/10) = 24  =>  x = 10 * log2(40/24) days
    assert hot_to_warm.occurred_at_ms == pytest.approx(T0 + 10 * math.log2(40 / 24) * DAY, abs=1)
    assert hot_to_warm.score == pytest.approx(24.0, rel=1e-12)
    assert all(c.cause_event_id is None for c in decay)
    events = [c for c in r.changes if c.cause == "event"]
    assert r.changes[: len(decay)] == tuple(decay) and r.changes[len(decay) :] == tuple(events)
    # and apply's decay changes are exactly advance's
    _, advanced = advance(s, "c1", T0 + 40 * DAY, model)
    assert tuple(decay) == advanced


def test_change_ids_are_deterministic(model: Model, event: EventFactory) -> None:
    events = [event("big", T0, "a"), event("na", T0 + DAY, "b"), event("pc", T0 + 60 * DAY, "c")]
    first = [c for r in run(model, events) for c in r.changes]
    second = [c for r in run(model, events) for c in r.changes]
    assert [c.change_id for c in first] == [c.change_id for c in second]
    assert len({c.change_id for c in first}) == len(first)
    for c in first:
        assert c.change_id == change_id(
            model=c.model,
            model_version=c.model_version,
            customer_id=c.customer_id,
            kind=c.kind,
            name=c.name,
            from_tier=c.from_tier,
            to_tier=c.to_tier,
            entered=c.entered,
            occurred_at_ms=c.occurred_at_ms,
        )
        assert len(c.change_id) == 32 and int(c.change_id, 16) >= 0
        assert (c.model, c.model_version) == ("small", 3)
    other = [
        c for r in run(model, [replace(e, customer_id="c2") for e in events]) for c in r.changes
    ]
    assert not {c.change_id for c in other} & {c.change_id for c in first}


def test_change_id_depends_on_every_part() -> None:
    base = {
        "model": "m",
        "model_version": 1,
        "customer_id": "c",
        "kind": "segment",
        "name": "s",
        "from_tier": None,
        "to_tier": None,
        "entered": True,
        "occurred_at_ms": 1.5,
    }
    ids = {change_id(**base)}  # type: ignore[arg-type]
    for key, other in [
        ("model", "n"),
        ("model_version", 2),
        ("customer_id", "d"),
        ("kind", "tier"),
        ("name", "t"),
        ("from_tier", "cold"),
        ("to_tier", "warm"),
        ("entered", False),
        ("occurred_at_ms", math.nextafter(1.5, 2)),
    ]:
        ids.add(change_id(**{**base, key: other}))  # type: ignore[arg-type]
    assert len(ids) == 10
    assert change_id(**{**base, "occurred_at_ms": 2}) == change_id(
        **{**base, "occurred_at_ms": 2.0}
    )  # type: ignore[arg-type]


def test_cloudevent_types(model: Model, event: EventFactory) -> None:
    r1 = apply(None, event("pa", T0), model)
    r2 = apply(r1.state, event("pa", T0 + 2 * DAY), model)
    types = {(c.kind, c.entered): c.cloudevent_type for r in (r1, r2) for c in r.changes}
    assert types[("segment", True)] == "engagement.segment.entered"
    assert types[("segment", False)] == "engagement.segment.exited"
    tier = apply(None, event("big", T0), model).changes[0]
    assert tier.cloudevent_type == "engagement.tier.changed"


def test_an_event_of_another_model_is_refused(model: Model, event: EventFactory) -> None:
    with pytest.raises(InvalidEvent, match="unknown_type"):
        apply(None, event("email_open", T0), model)


def test_apply_is_pure(model: Model, event: EventFactory) -> None:
    s = apply(None, event("big", T0), model).state
    e = event("na", T0 + 5 * DAY)
    copy = replace(s)
    assert apply(s, e, model) == apply(s, e, model)
    assert s == copy
    assert next_crossing(s, model) == next_crossing(s, model)
