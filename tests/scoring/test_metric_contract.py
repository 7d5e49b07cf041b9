"""One contract, every metric kind: each :class:`scoring.metrics.Metric` of ``KINDS`` goes
through the same checks (in the style of River's estimator checks), each check a
hypothesis property against the offline oracle of ``tests/scoring/oracles.py``.

A new kind of metric is registered in ``scoring.metrics.KINDS``, named below in
``NAMES`` (the test of the list fails until it is), and then checked like the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.apply import apply
from scoring.decay import sign
from scoring.events import Event
from scoring.metrics import KINDS, Check, Metric, resolve
from scoring.model import DAY_MS
from scoring.roots import Root
from scoring.rules import OPS, TRUTH, holds
from scoring.state import CustomerState, timeline
from scoring.timeline import Timeline
from tests.scoring.oracles import reference_metric
from tests.scoring.scoring_models import T0, small_model

MODEL = small_model()  # every kind of metric, values of both signs, three half-lives
#: The metrics of each kind in :data:`MODEL`.
NAMES = {
    "score": ["score"],
    "dimension": [f"dimension.{d}" for d in MODEL.dimensions],
    "days_since": [f"days_since.{t}" for t in MODEL.tracked],
    "nps": ["nps.category"],
}
HOUR = 3_600_000
HORIZON = 20 * DAY_MS
SAMPLES = [k * HORIZON / 400 + 1234.5678 for k in range(400)]  # off round times

SETTINGS = settings(
    max_examples=int(os.environ.get("SCORING_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def states(draw: st.DrawFn) -> CustomerState:
    """A customer after a few events of the small model over two days."""
    types = sorted(MODEL.event_types)
    raw = draw(
        st.lists(
            st.tuples(st.sampled_from(types), st.integers(0, 2 * DAY_MS), st.integers(0, 10)),
            min_size=1,
            max_size=8,
        )
    )
    state = None
    for n, (kind, at, score) in enumerate(raw):
        nps = score if kind == "nps_response" else None
        state = apply(state, Event(f"e{n}", "c", kind, T0 + at, nps), MODEL).state
    assert state is not None
    return state


def line_of(state: CustomerState) -> Timeline:
    return timeline(state, MODEL)


def slot_of(metric: Metric, name: str) -> int:
    return metric.slot(name.partition(".")[2], MODEL.dimensions, MODEL.tracked)


def check(metric: Metric, name: str, op: str, value: float | str) -> Check:
    return Check.of(name, metric, slot_of(metric, name), op, value)


def value_at(metric: Metric, line: Timeline, slot: int, t: float) -> float | str | None:
    """The contract's value at ``t``."""
    return metric.value(line.at(t), slot)


# --------------------------------------------------------------------------- checks


def check_is_registered(metric: Metric) -> None:
    assert KINDS[metric.kind] is metric
    assert metric.kind in metric.spelling and repr(metric) == f"<metric {metric.kind}>"
    assert isinstance(metric.cost, int) and metric.cost >= 0


def check_accepts_its_metrics_only(metric: Metric) -> None:
    dims, events = MODEL.dimensions, MODEL.event_types
    for kind, names in NAMES.items():
        for name in names:
            assert (resolve(name, dims, events) is metric) == (kind == metric.kind), name
    for bad in (f"{metric.kind}.nope", f"{metric.kind}.", f"{metric.kind}x", metric.kind.upper()):
        if bad != "score":
            assert resolve(bad, dims, events) is None, bad


@SETTINGS
@given(state=states(), later=st.floats(0, HORIZON))
def check_value_at_t(metric: Metric, state: CustomerState, later: float) -> None:
    """The value at any time from the clock on is the oracle's, to the bit."""
    line, t = line_of(state), state.clock_ms + later
    for name in NAMES[metric.kind]:
        got = value_at(metric, line, slot_of(metric, name), t)
        assert got == reference_metric(state, MODEL, name, t), (name, got)
        assert value_at(metric, line, slot_of(metric, name), line.clock) == metric.value(
            line, slot_of(metric, name)
        )


@SETTINGS
@given(state=states(), later=st.floats(0, HORIZON), bound=st.floats(-20, 40), data=st.data())
def check_holds_compares_the_value(
    metric: Metric, state: CustomerState, later: float, bound: float, data: st.DataObject
) -> None:
    """After an event a condition holds when the value at that time compares true."""
    point = line_of(state).at(state.clock_ms + later)
    for name in NAMES[metric.kind]:
        if metric.categories is None:
            value: float | str = data.draw(st.sampled_from([bound, 0.0, 2.0]))
            ops = list(OPS)
        else:
            value, ops = data.draw(st.sampled_from(metric.categories)), ["==", "!="]
        for op in ops:
            c = check(metric, name, op, value)
            left = metric.value(point, c.slot)
            assert metric.holds(point, c) == holds(op, left, value), (name, op, left, value)


@SETTINGS
@given(state=states(), until=st.floats(0, HORIZON))
def check_a_category_is_constant_between_events(
    metric: Metric, state: CustomerState, until: float
) -> None:
    line = line_of(state)
    for name in NAMES[metric.kind]:
        assert metric.categories is not None
        for value in metric.categories:
            for op in ("==", "!="):
                c = check(metric, name, op, value)
                truth = metric.constant(line, c)
                assert truth is not None
                assert metric.truth_until(line, c, line.clock + until) == truth
                for t in SAMPLES[::20]:
                    assert metric.holds(line.at(line.clock + t), c) == truth


def numeric_bounds(metric: Metric, line: Timeline, slot: int) -> st.SearchStrategy[float]:
    now = metric.value(line, slot)
    assert isinstance(now, float)
    near = [now] if math.isfinite(now) else []  # on the bound at the clock
    return st.one_of(st.floats(-20, 40), st.floats(0, 3), st.sampled_from([*near, 0.0, 1.5]))


@SETTINGS
@given(state=states(), until=st.floats(0, HORIZON), data=st.data())
def check_side_is_kept_until(
    metric: Metric, state: CustomerState, until: float, data: st.DataObject
) -> None:
    """A sure side holds at every time up to ``until``, and so does the truth it gives."""
    line, end = line_of(state), state.clock_ms + until
    for name in NAMES[metric.kind]:
        slot = slot_of(metric, name)
        bound = data.draw(numeric_bounds(metric, line, slot))
        assert metric.constant(line, check(metric, name, ">=", bound)) is None
        side = metric.side(line, slot, bound, end)
        assert side in (-1, 0, 1)
        for op in OPS:
            truth = metric.truth_until(line, check(metric, name, op, bound), end)
            assert truth == (None if not side else TRUTH[op][side + 1])
        for t in [line.clock, end, *(line.clock + s for s in SAMPLES if s < until)]:
            gap = value_at(metric, line, slot, t) - bound  # type: ignore[operator]
            assert side != 1 or gap >= 0, (name, bound, t, gap)
            assert side != -1 or gap < 0, (name, bound, t, gap)


@SETTINGS
@given(state=states(), data=st.data())
def check_sign_changes_are_exact(metric: Metric, state: CustomerState, data: st.DataObject) -> None:
    """The track of ``metric - bound``: its sign just after the clock, then each change
    at the first float where the value is on the new side, none missed in between."""
    line = line_of(state)
    for name in NAMES[metric.kind]:
        slot = slot_of(metric, name)
        bound = data.draw(numeric_bounds(metric, line, slot))

        def gap(t: float, slot: int = slot, bound: float = bound) -> float:
            return value_at(metric, line, slot, t) - bound  # type: ignore[operator]

        track = metric.track(line, slot, bound)
        steps = list(_changes(metric, line, track))
        current, at = track.sign, line.clock
        for t in (line.clock + s for s in SAMPLES):
            while steps and steps[0][0] <= t:
                at, new = steps.pop(0)
                assert new == -current and sign(gap(at)) != current, (name, bound, at)
                before = math.nextafter(at, -math.inf)
                assert before <= line.clock or sign(gap(before)) in (current, 0), (name, at)
                current = new
            clear = abs(gap(t)) > 1e-9 * (abs(bound) + 40)
            assert not clear or sign(gap(t)) == current, (name, bound, t, gap(t), current)


def _changes(metric: Metric, line: Timeline, track: object) -> Iterator[tuple[float, int]]:
    """Every sign change of a track within the horizon, refined (none for a constant)."""
    if getattr(track, "line", None) is None:
        return
    for item in metric.changes(line, track):  # type: ignore[arg-type]
        if isinstance(item, Root):
            at = item.refine()
            if at > line.clock + HORIZON:
                return
            yield at, -item.old
        elif item > line.clock + HORIZON:
            return


Contract = Callable[[Metric], None]


def yield_checks(metric: Metric) -> Iterator[Contract]:
    """The checks of ``metric``'s contract: what every kind does, then what a kind
    compared with numbers (which moves with time) or with categories does."""
    yield check_is_registered
    yield check_accepts_its_metrics_only
    yield check_value_at_t
    yield check_holds_compares_the_value
    if metric.categories is None:
        yield check_side_is_kept_until
        yield check_sign_changes_are_exact
    else:
        yield check_a_category_is_constant_between_events


@pytest.mark.parametrize(
    ("metric", "contract"),
    [
        pytest.param(m, c, id=f"{m.kind}-{c.__name__.removeprefix('check_')}")
        for m in KINDS.values()
        for c in yield_checks(m)
    ],
)
def test_metric_contract(metric: Metric, contract: Contract) -> None:
    contract(metric)


def test_every_kind_is_named_and_costs_order_the_checks() -> None:
    assert set(NAMES) == set(KINDS), "name the new kind's metrics in NAMES"
    assert len({m.cost for m in KINDS.values()}) == len(KINDS)  # one cost table, no ties
    for _, checks in MODEL.plan.rules:
        costs = [c.metric.cost for c in checks]
        assert costs == sorted(costs)  # the cheapest to watch first
