"""Decay crossings (issue §4): next_crossing, advance, right-limit truth, metric contract."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from scoring.apply import apply
from scoring.crossing import advance, next_crossing, quiet_until
from scoring.events import Event
from scoring.metrics import KINDS
from scoring.model import DAY_MS, Model, parse_model
from scoring.rules import holds
from scoring.state import CustomerState, decayed_values, new_state, timeline, values_at
from tests.scoring.oracles import reference_metric, reference_segments

T0 = 1_699_920_000_000
DAY = DAY_MS
HOUR = 3_600_000

EventFactory = Callable[..., Event]


def test_a_new_customer_never_crosses(model: Model) -> None:
    assert next_crossing(new_state(), model) is None
    assert advance(new_state(), "c", 1e15, model) == (new_state(), ())


def test_tier_decay_crossings_are_exact_and_one_step(model: Model, event: EventFactory) -> None:
    state = apply(None, event("big", T0), model).state  # c = 40, half-life 10 days: hot
    _, changes = advance(state, "c1", T0 + 365 * DAY, model)
    tiers = [c for c in changes if c.kind == "tier"]
    assert [(c.from_tier, c.to_tier, c.entered, c.cause) for c in tiers] == [
        ("hot", "warm", False, "decay"),
        ("warm", "cold", False, "decay"),
    ]
    for change, bound in zip(tiers, (24.0, 8.0), strict=True):
        # 40 * 2^(-x/10) = bound
        expected = T0 + 10 * math.log2(40 / bound) * DAY
        assert change.occurred_at_ms == pytest.approx(expected, abs=1e-3)
        assert change.score == pytest.approx(bound, rel=1e-12)
        assert values_at(state, model, change.occurred_at_ms).score == pytest.approx(
            bound, rel=1e-12
        )
        # and the float found is the first at which the score is below the bound
        before = math.nextafter(change.occurred_at_ms, 0)
        assert values_at(state, model, before).score >= bound > change.score


def test_advance_stops_before_until(model: Model, event: EventFactory) -> None:
    state = apply(None, event("big", T0), model).state
    first = next_crossing(state, model)
    assert first is not None
    same, changes = advance(state, "c1", math.nextafter(first, 0), model)
    assert same is state and changes == ()
    moved, changes = advance(state, "c1", first, model)
    assert changes and moved.clock_ms == first
    everything, all_changes = advance(state, "c1", T0 + 365 * DAY, model)
    assert next_crossing(everything, model) is None
    assert everything.clock_ms < T0 + 365 * DAY  # never past the last crossing applied
    assert [c.occurred_at_ms for c in all_changes] == sorted(c.occurred_at_ms for c in all_changes)


def test_days_since_crossings(model: Model, event: EventFactory) -> None:
    state = apply(None, event("pa", T0), model).state
    _, changes = advance(state, "c1", T0 + 3 * DAY, model)
    quiet = next(c for c in changes if c.name == "quiet_pa")
    active = next(c for c in changes if c.name == "active")
    assert quiet.entered and quiet.occurred_at_ms == T0 + 2 * DAY
    assert not active.entered and active.occurred_at_ms == T0 + 1.5 * DAY


def test_mixed_signs_can_rise_with_time(model: Model, event: EventFactory) -> None:
    # a = -5 (fast), c = +9 (slow): the score 4 rises toward 9 as the negative part fades
    state = apply(None, event("na", T0), model).state
    for _ in range(3):
        state = apply(state, event("pc", T0), model).state
    assert values_at(state, model, T0).score == 4.0
    assert values_at(state, model, T0 + 2 * DAY).score > 6.5
    _, changes = advance(state, "c1", T0 + 100 * DAY, model)
    assert [c.score for c in changes if c.name == "score_band"] == pytest.approx([2.0])


def test_right_limit_truth_at_a_touch(
    make_model: Callable[..., Model], event: EventFactory
) -> None:
    """A score that touches a bound and turns back does not cross it."""
    model = make_model(
        dimensions={"a": {"half_life_days": 1}, "b": {"half_life_days": 2}},
        events={"pa": {"points": 1, "dimension": "a"}, "nb": {"points": -1, "dimension": "b"}},
        tiers={"only": 0},
        segments={"pos": {"all": [{"metric": "score", "op": ">", "value": 0}]}},
    )
    # score(x) = -2^-x/2 + 2^-x (x in days, from -1 + 1 = 0 at x = 0):
    # with u = 2^-x/2: -u + u^2 ... negative for all x > 0, zero at 0: never positive
    state = apply(None, event("pa", T0), model).state
    state = apply(state, event("nb", T0), model).state
    assert values_at(state, model, T0).score == 0.0
    assert reference_segments(state, model) == 0
    assert model.plan.segments_at(timeline(state, model)) == 0
    assert next_crossing(state, model) is None


def test_equality_holds_only_at_the_instant(
    make_model: Callable[..., Model], event: EventFactory
) -> None:
    model = make_model(
        tiers={"only": 0},
        segments={"five": {"all": [{"metric": "dimension.a", "op": "==", "value": 5}]}},
    )
    result = apply(None, event("pa", T0), model)
    assert [(c.name, c.entered) for c in result.changes] == [("five", True)]
    state, changes = advance(result.state, "c1", T0 + DAY, model)
    assert [(c.name, c.entered, c.occurred_at_ms) for c in changes] == [("five", False, T0)]
    assert next_crossing(state, model) is None


def test_hysteresis_zero_leaves_as_soon_as_below(
    make_model: Callable[..., Model], event: EventFactory
) -> None:
    model = make_model(tiers={"cold": 0, "warm": 5}, segments={})
    state = apply(None, event("pa", T0), model).state  # exactly 5: warm, then decays
    assert state.tier_name(model) == "warm"
    assert next_crossing(state, model) == T0  # right after the event it is below 5
    after, changes = advance(state, "c1", T0, model)
    assert [(c.from_tier, c.to_tier) for c in changes] == [("warm", "cold")]
    assert next_crossing(after, model) is None


# --------------------------------------------------------------------------- contract
#
# One test over every metric kind x operator: the truth after an event is the metric
# compared at the event time, and next_crossing is exactly when the truth (just
# after) first differs from it, compared with the metric computed independently.

CONTRACT_MODEL: dict[str, Any] = {
    "model": {"name": "contract", "version": 1, "half_life_days": 10},
    "dimensions": {"a": {"half_life_days": 1}, "b": {"half_life_days": 4}},
    "tiers": {"only": 0},
    "events": {
        "pa": {"points": 5, "dimension": "a"},
        "nb": {"points": -1, "dimension": "b"},
        "nps_response": {"points": 0, "dimension": "b"},
    },
}
METRICS: list[tuple[str, float | str]] = [
    ("score", 2.0),  # crossed while decaying
    ("score", 4.0),  # equal right at the event: 5 - 1
    ("dimension.a", 5.0),  # equal right at the event
    ("dimension.a", 1.0),
    ("dimension.b", -0.5),
    ("days_since.pa", 1.0),
    ("days_since.pa", 0.0),  # equal right at the event
    ("days_since.any", 2.5),
    ("days_since.nps_response", 1.0),  # never happened: infinitely long ago
    ("nps.category", "promoter"),
    ("nps.category", "detractor"),
]
OPS = ["<", "<=", ">", ">=", "==", "!="]
CASES = [
    (metric, op, value)
    for metric, value in METRICS
    for op in (OPS if not isinstance(value, str) else ["==", "!="])
]


@pytest.mark.parametrize(("metric", "op", "value"), CASES)
def test_every_metric_and_operator(metric: str, op: str, value: float | str) -> None:
    data = dict(CONTRACT_MODEL)
    data["segments"] = {"s": {"all": [{"metric": metric, "op": op, "value": value}]}}
    model = parse_model(data)
    state = apply(None, Event("e1", "c", "nps_response", T0, 9), model).state
    state = apply(state, Event("e2", "c", "pa", T0, None), model).state
    state = apply(state, Event("e3", "c", "nb", T0, None), model).state
    check = model.plan.rules[0][1][0]

    def truth(t: float) -> bool:
        return holds(op, reference_metric(state, model, metric, t), value)  # type: ignore[arg-type]

    # after the event: the metric compared at the event time
    stored = bool(state.segments & 1)
    assert stored == truth(T0)
    assert check.metric is KINDS[metric.partition(".")[0]]
    assert check.metric.value(timeline(state, model), check.slot) == reference_metric(
        state, model, metric, T0
    )
    crossing = next_crossing(state, model)
    horizon = T0 + 30 * DAY
    # (off the round times where a metric can equal its bound for an instant only)
    grid = [T0 + k * HOUR / 4 + 1234.5678 for k in range(30 * 96)]
    end = horizon if crossing is None else crossing
    # before the crossing the truth never differs (sampled), ...
    assert all(truth(t) == stored for t in grid if t < end - 1)
    if crossing is not None:
        # ... and just after it, it does
        assert truth(crossing + 1) != stored
        after, changes = advance(state, "c", crossing, model)
        assert [(c.name, c.entered) for c in changes] == [("s", not stored)]
        assert bool(after.segments & 1) == (not stored)
        # and the next crossing of the new state is consistent with it
        again = next_crossing(after, model)
        assert again is None or again > crossing
    # the cheap test the due index uses never claims quiet past the crossing
    for until in (T0, T0 + HOUR, T0 + 10 * DAY, horizon, math.inf):
        if quiet_until(state, model, until):
            assert crossing is None or crossing > until
    if crossing is not None:
        assert not quiet_until(state, model, math.inf)


def test_contract_covers_every_metric_kind_and_operator() -> None:
    kinds = {m.partition(".")[0] for m, _, _ in CASES}
    assert kinds == {"score", "dimension", "days_since", "nps"}
    for kind in kinds - {"nps"}:
        assert {op for m, op, _ in CASES if m.startswith(kind)} == set(OPS)
    assert "days_since.any" in {m for m, _, _ in CASES}


def test_crossing_values_explain_the_change(model: Model, event: EventFactory) -> None:
    state = apply(None, event("big", T0), model).state
    _, changes = advance(state, "c1", T0 + 60 * DAY, model)
    for change in changes:
        at = change.occurred_at_ms
        expected = decayed_values(state, model, at)
        assert dict(change.dimensions) == pytest.approx(
            dict(zip(model.dimensions, expected, strict=True)), rel=1e-12
        )
        assert change.score == pytest.approx(math.fsum(expected), rel=1e-12)


def test_advance_is_pure_and_replayable(model: Model, event: EventFactory) -> None:
    state = apply(None, event("big", T0), model).state
    state = apply(state, event("na", T0 + HOUR), model).state
    a = advance(state, "c1", T0 + 50 * DAY, model)
    b = advance(state, "c1", T0 + 50 * DAY, model)
    assert a == b
    # in several steps: the same crossings, the same ids
    s, stepwise = state, []
    for k in range(1, 51):
        s, changes = advance(s, "c1", T0 + k * DAY, model)
        stepwise.extend(changes)
    assert [c.change_id for c in stepwise] == [c.change_id for c in a[1]]
    assert s == a[0]


def test_a_state_out_of_line_with_its_tier_is_repaired_one_step_at_a_time(model: Model) -> None:
    """E.g. a state decoded under a model whose thresholds changed."""
    state = CustomerState(clock_ms=float(T0), values=(0.0, 0.0, 100.0), last_seen=(None, None))
    assert next_crossing(state, model) == T0
    repaired, changes = advance(state, "c1", T0, model)
    assert [(c.from_tier, c.to_tier) for c in changes if c.kind == "tier"] == [
        ("cold", "warm"),
        ("warm", "hot"),
    ]
    assert replace(repaired, segments=0).tier == 2
