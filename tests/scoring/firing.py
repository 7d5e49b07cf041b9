"""What the firing-rule tests share: a model with short half-lives, histories of a few
customers on a coarse time grid, and one offline pass (apply every event in order, then
advance everyone) to compare live processing with.

Times sit on a coarse grid so that equal timestamps, crossings exactly at an event's
time and timer ``until`` values exactly at a crossing or an event come up often.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import fields

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from scoring import Change, CustomerState, Event, Model, advance, apply, next_crossing, parse_model

T0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
GRID = 15 * MINUTE

#: Short half-lives (minutes to hours), points of both signs, every crossing kind:
#: tiers with hysteresis, a dimension bound, a two-sided score band, days_since.
MODEL: Model = parse_model(
    {
        "model": {"name": "firing", "version": 1, "half_life_days": 1 / 24},
        "dimensions": {
            "a": {"half_life_days": 0.5 / 24},
            "b": {"half_life_days": 3 / 24},
            "c": {},
        },
        "tiers": {"cold": 0, "warm": 8, "hot": 20, "hysteresis": 0.25},
        "events": {
            "pa": {"points": 6, "dimension": "a"},
            "na": {"points": -4, "dimension": "a"},
            "pb": {"points": 5, "dimension": "b"},
            "nb": {"points": -3, "dimension": "b"},
            "pc": {"points": 4, "dimension": "c"},
            "nc": {"points": -2, "dimension": "c"},
            "big": {"points": 15, "dimension": "b"},
        },
        "segments": {
            "a_high": {"all": [{"metric": "dimension.a", "op": ">=", "value": 3}]},
            "band": {
                "all": [
                    {"metric": "score", "op": ">", "value": 2},
                    {"metric": "score", "op": "<=", "value": 10},
                ]
            },
            "b_negative": {"any": [{"metric": "dimension.b", "op": "<", "value": -1}]},
            "quiet_pa": {"all": [{"metric": "days_since.pa", "op": ">=", "value": 0.125}]},
            "active": {"all": [{"metric": "days_since.any", "op": "<", "value": 0.05}]},
        },
    },
    "firing-rule-test",
)
TYPES = sorted(MODEL.event_types)
CUSTOMERS = ["c1", "c2", "c3"]

SETTINGS = settings(
    max_examples=int(os.environ.get("SCORING_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Changes = list[Change]
States = dict[str, CustomerState]


@st.composite
def histories(draw: st.DrawFn, customers: Sequence[str] = CUSTOMERS) -> list[Event]:
    """A few customers' events on a 15-minute grid over 6 hours, maybe out of order,
    maybe with an event re-sent (same id)."""
    raw = draw(
        st.lists(
            st.tuples(st.sampled_from(customers), st.sampled_from(TYPES), st.integers(0, 24)),
            min_size=1,
            max_size=14,
        )
    )
    if draw(st.booleans()):
        raw.sort(key=lambda r: r[2])
    events = [
        Event(f"e{i}", cid, kind, T0 + k * GRID, None) for i, (cid, kind, k) in enumerate(raw)
    ]
    resent = draw(st.lists(st.integers(0, len(events) - 1), max_size=2))
    for j in resent:
        events.insert(draw(st.integers(j + 1, len(events))), events[j])
    return events


def offline(events: Iterable[Event], end_ms: float) -> tuple[Changes, States]:
    """One pass: apply every event in order, then advance everyone to ``end_ms``."""
    states: States = {}
    changes: Changes = []
    for e in events:
        result = apply(states.get(e.customer_id), e, MODEL)
        states[e.customer_id] = result.state
        changes.extend(result.changes)
    for cid, state in states.items():
        states[cid], fired = advance(state, cid, end_ms, MODEL)
        changes.extend(fired)
    return changes, states


def fold(events: Iterable[Event], customer_id: str = "c1") -> CustomerState:
    """The customer's state after applying ``events`` (no advance afterwards)."""
    return offline(events, -1e300)[1][customer_id]


def pending_crossings(states: States) -> list[float]:
    return sorted(t for s in states.values() if (t := next_crossing(s, MODEL)) is not None)


def key(change: Change) -> tuple[str, ...]:
    """Every field of a change (the id first), comparable and sortable."""
    return tuple(
        repr(
            sorted(change.dimensions.items()) if f.name == "dimensions" else getattr(change, f.name)
        )
        for f in fields(change)
    )


def assert_same_changes(got: Changes, want: Changes) -> None:
    """The same changes, ids and every field, as multisets (see the xfail below for
    why one pass can hold one id twice)."""
    assert sorted(map(key, got)) == sorted(map(key, want))
