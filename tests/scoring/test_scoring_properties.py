"""Hypothesis properties of the scoring core (issue "Tests")."""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.apply import apply
from scoring.crossing import advance, find_crossing, next_crossing, quiet_until
from scoring.decay import decay_factor
from scoring.events import Event
from scoring.model import DAY_MS, Model
from scoring.state import CustomerState, decayed_values, values_at
from tests.scoring.oracles import reference_segments
from tests.scoring.scoring_models import small_model

T0 = 1_699_920_000_000
DAY = DAY_MS
HOUR = 3_600_000

MODEL = small_model()
UNCAPPED = sorted(t for t, et in MODEL.event_types.items() if et.max_per_day is None)
POSITIVE = sorted(t for t, et in MODEL.event_types.items() if et.points >= 0)
MIXED = ["pa", "na", "pb", "nb", "pc", "nc"]

#: ``SCORING_EXAMPLES=5000 pytest tests/scoring`` for a deep run; modest by default.
SETTINGS = settings(
    max_examples=int(os.environ.get("SCORING_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def events_of(
    types: list[str], max_size: int = 16, span_days: int = 20
) -> st.SearchStrategy[list[Event]]:
    one = st.tuples(
        st.sampled_from(types),
        st.integers(0, span_days * DAY),
        st.integers(0, 10),
    )

    def build(raw: list[tuple[str, int, int]]) -> list[Event]:
        return [
            Event(f"e{i}", "c1", kind, T0 + offset, score if kind == "nps_response" else None)
            for i, (kind, offset, score) in enumerate(raw)
        ]

    return st.lists(one, min_size=1, max_size=max_size).map(build)


def run(events: list[Event], model: Model = MODEL) -> CustomerState:
    state = None
    for e in events:
        state = apply(state, e, model).state
    assert state is not None
    return state


def close(x: float, y: float, scale: float) -> bool:
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y)) + 1e-12 * scale


@SETTINGS
@given(st.data())
def test_order_independence_without_caps(data: st.DataObject) -> None:
    events = data.draw(events_of(UNCAPPED))
    shuffled = data.draw(st.permutations(events))
    end = max(e.ts_ms for e in events)
    a, b = run(events), run(shuffled)
    assert a.clock_ms == b.clock_ms == end
    va, vb = values_at(a, MODEL, end), values_at(b, MODEL, end)
    for dim in MODEL.dimensions:
        half_life = MODEL.half_life_ms(dim)
        scale = math.fsum(
            abs(MODEL.event_types[e.type].points) * decay_factor(end - e.ts_ms, half_life)
            for e in events
            if MODEL.event_types[e.type].dimension == dim
        )
        assert close(va.dimensions[dim], vb.dimensions[dim], scale), dim
    # what does not depend on arithmetic is identical
    assert (a.last_seen, a.nps_score, a.events_applied) == (
        b.last_seen,
        b.nps_score,
        b.events_applied,
    )


@SETTINGS
@given(st.data())
def test_duplicates_are_ignored(data: st.DataObject) -> None:
    events = data.draw(events_of(sorted(MODEL.event_types), max_size=12))
    with_duplicates: list[Event] = []
    for i, e in enumerate(events):
        with_duplicates.append(e)
        for _ in range(data.draw(st.integers(0, 2))):
            with_duplicates.append(events[data.draw(st.integers(0, i))])
    assert run(with_duplicates) == run(events)


@SETTINGS
@given(events_of(POSITIVE), st.lists(st.floats(0, 60), min_size=2, max_size=10))
def test_non_negative_points_never_rise_between_events(
    events: list[Event], offsets_days: list[float]
) -> None:
    state = None
    for e in events:
        before = None if state is None else values_at(state, MODEL, max(state.clock_ms, e.ts_ms))
        if state is not None and before is not None:
            at_clock = values_at(state, MODEL, state.clock_ms)
            for dim in MODEL.dimensions:
                assert before.dimensions[dim] <= at_clock.dimensions[dim]
        state = apply(state, e, MODEL).state
        times = sorted(state.clock_ms + d * DAY for d in offsets_days)
        series = [values_at(state, MODEL, t) for t in times]
        for earlier, later in itertools.pairwise(series):
            for dim in MODEL.dimensions:
                assert 0 <= later.dimensions[dim] <= earlier.dimensions[dim]
            assert later.score <= earlier.score


def would_change(state: CustomerState, model: Model, t: float) -> bool:
    """Point evaluation at ``t`` (no crossing applied): would the tier or a segment move?"""
    values = decayed_values(state, model, t)
    score = math.fsum(values)
    up, down = model.plan.tiers.up[state.tier], model.plan.tiers.down[state.tier]
    if (up is not None and score >= up) or (down is not None and score < down):
        return True
    moved = replace(state, clock_ms=t, values=values)
    return reference_segments(moved, model) != state.segments


def bounds_at(state: CustomerState, model: Model, t: float) -> list[float]:
    """|metric - bound| / scale of every watched bound at ``t``."""
    values = decayed_values(state, model, t)
    scale = math.fsum(abs(v) for v in values)
    score = math.fsum(values)
    out = []
    for bound in (model.plan.tiers.up[state.tier], model.plan.tiers.down[state.tier]):
        if bound is not None:
            out.append(abs(score - bound) / max(abs(bound), scale, 1e-300))
    for rule in model.segments:
        for c in rule.conditions:
            if isinstance(c.value, str):
                continue
            if c.kind == "score":
                metric, size = score, scale
            elif c.kind == "dimension":
                metric = values[model.dimension_index(c.arg)]
                size = abs(metric)
            else:
                last = state.last_seen_of(model, c.arg)
                if last is None:
                    continue
                metric, size = (t - last) / DAY, 1.0
            out.append(abs(metric - c.value) / max(abs(c.value), size, 1e-300))
    return out


@SETTINGS
@given(events_of([*MIXED, "nps_response", "big"], max_size=10, span_days=5))
def test_next_crossing_never_misses_a_sampled_crossing_and_is_exact(events: list[Event]) -> None:
    state = run(events)
    crossing = next_crossing(state, MODEL)
    # dense sampling: every 20 minutes for 30 days after the clock
    first_sampled = next(
        (
            t
            for k in range(1, 30 * 72 + 1)
            if would_change(state, MODEL, t := state.clock_ms + k * 20 * 60_000)
        ),
        None,
    )
    if first_sampled is not None:
        assert crossing is not None and state.clock_ms <= crossing <= first_sampled
    if crossing is not None:
        assert crossing >= state.clock_ms
        # exact: some watched metric equals its bound there (within 1e-9 relative)
        assert min(bounds_at(state, MODEL, crossing)) <= 1e-9


@SETTINGS
@given(events_of([*MIXED, "big"], max_size=8, span_days=5), st.integers(0, 60 * DAY))
def test_apply_applies_exactly_the_crossings_advance_finds(events: list[Event], later: int) -> None:
    state = run(events)
    event = Event("last", "c1", "pc", int(state.clock_ms) + 1 + later, None)
    result = apply(state, event, MODEL)
    decay = tuple(c for c in result.changes if c.cause == "decay")
    advanced_state, advanced = advance(state, "c1", event.ts_ms, MODEL)
    assert decay == advanced
    # after advance no crossing is pending before the event
    pending = find_crossing(advanced_state, MODEL)
    assert pending is None or pending.at_ms > event.ts_ms


@SETTINGS
@given(st.integers(0, 2), st.lists(st.sampled_from([-1, 1]), max_size=60))
def test_hysteresis_never_flaps_within_a_band(tier: int, steps: list[int]) -> None:
    model = small_model(
        dimensions={"c": {"half_life_days": 1e9}},
        events={
            "up": {"points": 0.5, "dimension": "c"},
            "down": {"points": -0.5, "dimension": "c"},
        },
        segments={},
    )
    low = model.plan.tiers.down[tier] or 0.0
    high = model.plan.tiers.up[tier] or 100.0
    start = [Event(f"s{i}", "c1", "up", T0) for i in range(int(model.tiers[tier].threshold * 2))]
    state = run(start, model) if start else apply(None, Event("z", "c1", "up", T0), model).state
    assert state.tier == tier
    for i, step in enumerate(steps):
        score = values_at(state, model, T0).score
        if not low <= score + 0.5 * step < high:
            continue  # stay within the band
        result = apply(state, Event(f"m{i}", "c1", "up" if step > 0 else "down", T0), model)
        assert result.changes == ()
        state = result.state
        assert state.tier == tier


@SETTINGS
@given(
    events_of([*MIXED, "nps_response", "big"], max_size=10, span_days=5),
    st.one_of(st.just(math.inf), st.integers(-DAY, 40 * DAY)),
)
def test_quiet_until_is_never_wrong(events: list[Event], offset: float) -> None:
    """The due index relies on it: quiet until ``u`` means no crossing at or before ``u``."""
    state = run(events)
    until = state.clock_ms + offset
    crossing = next_crossing(state, MODEL)
    if quiet_until(state, MODEL, until):
        assert until >= state.clock_ms
        assert crossing is None or crossing > until
    if crossing is not None:  # the crossing itself is never "quiet"
        assert not quiet_until(state, MODEL, crossing)
        assert not quiet_until(state, MODEL, math.inf)


@SETTINGS
@given(
    events_of([*MIXED, "nps_response", "big"], max_size=8, span_days=5),
    st.sampled_from([*MIXED, "big"]),
    st.integers(-DAY, 40 * DAY),
)
def test_a_known_quiet_time_changes_nothing_apply_gives(
    events: list[Event], kind: str, offset: int
) -> None:
    """``quiet_before_ms`` (a proven crossing-free time) only skips work."""
    state = run(events)
    crossing = next_crossing(state, MODEL)
    known = math.inf if crossing is None else crossing
    event = Event("next", "c1", kind, int(state.clock_ms) + offset, None)
    assert apply(state, event, MODEL, quiet_before_ms=known) == apply(state, event, MODEL)
