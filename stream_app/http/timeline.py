"""A customer's score and dimensions over time, reconstructed exactly from what is stored.

Every event's points decay with its dimension's half-life ``H_d``, so a dimension is worth
``V_d(t) = sum(points * 2 ** (-(t - ts) / H_d))`` over its events with ``ts <= t``
(docs/scoring.md, "Score maths"). The state holds ``V_d`` at its clock ``c``; the
explanation keeps the latest events. All events of one dimension share its half-life, so
for any ``t`` at or after the oldest kept event::

    V_d(t) = V_d(c) * 2 ** (-(t - c) / H_d) - sum(points * 2 ** (-(t - ts) / H_d))
             over the kept events of d with ts > t

exactly: the events not kept are all older, and their sum is one exponential from there on.
The curve between two kept events is therefore known at every instant, not interpolated;
:func:`timeline` evaluates it on a grid, and just before and at each instant a kept event
happened (the jumps: two points with the same time).
Without an explanation (``ENGAGEMENT_EXPLAIN_EVENTS=0``) the curve starts at the last event.
"""

from __future__ import annotations

import math
from typing import Any

from scoring import CustomerState, Explanation, Model, values_at
from stream_app.contracts import rfc3339

#: Grid points of a timeline by default, and at most (``samples``, checked by
#: :func:`stream_app.http.api.samples_param`).
DEFAULT_SAMPLES = 240
MAX_SAMPLES = 2000


class Curve:
    """``V_d(t)`` of one customer from its state and kept events (see the module doc)."""

    def __init__(self, state: CustomerState, expl: Explanation | None, model: Model) -> None:
        self.model = model
        self.clock = state.clock_ms
        self.at_clock = values_at(state, model, state.clock_ms).dimensions
        self.half_life = {d: model.half_life_ms(d) for d in model.dimensions}
        kept = expl.recent if expl is not None else ()
        #: (ts, type, points, event id, dimension), oldest first
        self.events = sorted(
            (ts, t, p, e, model.event_types[t].dimension)
            for ts, t, p, e in kept
            if t in model.event_types
        )
        if self.events:
            self.exact_from: float = self.events[0][0]
        else:
            last = state.last_event_ms
            self.exact_from = last if last is not None else state.clock_ms
        #: every applied event is kept: the values were 0 before the first one
        self.complete = bool(self.events) and state.events_applied <= len(self.events)

    def dimensions(self, t: float, *, before: bool = False) -> dict[str, float]:
        """Each dimension's value at ``t`` (>= ``exact_from``); ``before``: without the
        events at exactly ``t``."""
        out = {
            d: self.at_clock[d] * 2.0 ** (-(t - self.clock) / self.half_life[d])
            for d in self.model.dimensions
        }
        for ts, _t, points, _e, dim in self.events:
            if ts > t or (before and ts == t):
                out[dim] -= points * 2.0 ** (-(t - ts) / self.half_life[dim])
        return out


def timeline(
    customer_id: str,
    state: CustomerState,
    expl: Explanation | None,
    model: Model,
    *,
    now_ms: float,
    samples: int = DEFAULT_SAMPLES,
) -> dict[str, Any]:
    """The body of ``GET /v1/customers/{id}/timeline``: columns of times (ms), score and
    dimension values from the oldest kept event to ``now_ms``, and the kept events."""
    curve = Curve(state, expl, model)
    start = curve.exact_from
    end = max(now_ms, state.clock_ms, start)
    grid = [start + (end - start) * k / (samples - 1) for k in range(samples)]
    jumps = {float(ts) for ts, *_ in curve.events}  # each instant an event happened at
    points = [(t, False) for t in grid if t not in jumps]
    points += [(t, before) for t in jumps for before in (True, False)]
    points.sort(key=lambda p: (p[0], not p[1]))  # at an event: the value before it first
    times: list[float] = []
    columns: dict[str, list[float]] = {d: [] for d in model.dimensions}
    scores: list[float] = []
    for t, before in points:
        dims = curve.dimensions(t, before=before)
        times.append(t)
        scores.append(math.fsum(dims.values()))
        for d, v in dims.items():
            columns[d].append(v)
    return {
        "customer_id": customer_id,
        "from": rfc3339(start),
        "to": rfc3339(end),
        "complete": curve.complete,
        "tiers": [
            {
                "name": t.name,
                "threshold": t.threshold,
                "leave_below": t.threshold * (1 - model.hysteresis),
            }
            for t in model.tiers
        ],
        "series": {"t_ms": times, "score": scores, "dimensions": columns},
        "events": [
            {
                "event_id": e,
                "type": typ,
                "dimension": dim,
                "timestamp": rfc3339(ts),
                "timestamp_ms": ts,
                "points": p,
            }
            for ts, typ, p, e, dim in curve.events
        ],
    }
