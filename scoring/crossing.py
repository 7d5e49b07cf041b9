"""Decay crossings: the moments a tier or a segment changes with no new event.

Between events a customer's metrics are known functions of time: the score and each
dimension are sums of exponentials, ``days_since.*`` grows linearly, the NPS
category is constant. Every bound a rule compares them with (the tier's up and down
bounds, each segment condition's value) gives a function ``metric - bound`` whose
right-limit sign changes are found exactly by :func:`scoring.decay.sign_steps`. The
candidate times of all of them are taken in order and the first at which the tier
would move (up: score >= next threshold; down: score < threshold * (1 - hysteresis))
or a segment's truth differs from the stored one is the next crossing.

Truth at a crossing is the right-limit truth: what holds just *after* it. A metric
that only touches a bound crosses nothing; one that reaches it and turns back is
seen for what it does next.

A continuous crossing moves the tier one step. :func:`advance` applies crossings in
time order, each at its exact time, and never moves the clock past the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scoring.changes import SegmentChange, diff
from scoring.decay import LN2, ExpSum, SignSteps, decay_factor, first_change, sign_steps
from scoring.decay import monotone_pieces as _pieces
from scoring.errors import ScoringError
from scoring.model import DAY_MS, Condition, Model
from scoring.segments import holds, holds_for_sign, rule_holds
from scoring.state import CustomerState, decayed_values
from scoring.tiers import down_bound, up_bound

__all__ = ["Crossing", "advance", "find_crossing", "next_crossing"]

#: More crossings than this between two calls means a bug, not a customer.
_MAX_CROSSINGS = 10_000


@dataclass(frozen=True, slots=True)
class Crossing:
    """The next crossing: its time and the tier and segment mask just after it."""

    at_ms: float
    tier: int
    segments: int


def next_crossing(state: CustomerState, model: Model) -> float | None:
    """The earliest time ``>= state.clock_ms`` at which, without new events, the tier
    or a segment changes; None if that never happens."""
    crossing = find_crossing(state, model)
    return None if crossing is None else crossing.at_ms


def find_crossing(state: CustomerState, model: Model) -> Crossing | None:
    """Like :func:`next_crossing`, with the tier and segments just after the crossing."""
    if state.is_new:
        return None
    watch = _Watch(state, model)
    up, down = up_bound(state.tier, model), down_bound(state.tier, model)
    up_steps = None if up is None else watch.score(up)
    down_steps = None if down is None else watch.score(down)
    conditions = {c: watch.condition(c) for r in model.segments for c in r.conditions}
    times = {state.clock_ms}
    for steps in (up_steps, down_steps, *conditions.values()):
        if isinstance(steps, SignSteps):
            times.update(at for at, _ in steps.changes)
    for at in sorted(times):
        tier = state.tier
        if up_steps is not None and up_steps.sign_at(at) >= 0:
            tier += 1
        elif down_steps is not None and down_steps.sign_at(at) < 0:
            tier -= 1
        mask = _mask_at(model, conditions, at)
        if tier != state.tier or mask != state.segments:
            return Crossing(at, tier, mask)
    return None


def advance(
    state: CustomerState, customer_id: str, until_ms: float, model: Model
) -> tuple[CustomerState, tuple[SegmentChange, ...]]:
    """Apply every crossing at or before ``until_ms``, each at its exact time.

    The clock moves to each crossing applied and no further; the changes have cause
    ``decay``. Pure: the same state and ``until_ms`` always give the same result.
    """
    changes: list[SegmentChange] = []
    for _ in range(_MAX_CROSSINGS):
        crossing = find_crossing(state, model)
        if crossing is None or crossing.at_ms > until_ms:
            return state, tuple(changes)
        values = decayed_values(state, model, crossing.at_ms)
        changes.extend(
            diff(
                model,
                customer_id,
                tier_before=state.tier,
                tier_after=crossing.tier,
                segments_before=state.segments,
                segments_after=crossing.segments,
                occurred_at_ms=crossing.at_ms,
                values=values,
                score=math.fsum(values),
                cause="decay",
                cause_event_id=None,
            )
        )
        state = replace(
            state,
            clock_ms=crossing.at_ms,
            values=values,
            tier=crossing.tier,
            segments=crossing.segments,
        )
    raise ScoringError(f"advance: more than {_MAX_CROSSINGS} crossings for {customer_id!r}")


def _mask_at(model: Model, conditions: dict[Condition, SignSteps | bool], at: float) -> int:
    """Segment mask from the right-limit truth of every condition just after ``at``."""

    def truth(condition: Condition) -> bool:
        steps = conditions[condition]
        if isinstance(steps, bool):
            return steps
        return holds_for_sign(condition.op, steps.sign_at(at))

    mask = 0
    for i, rule in enumerate(model.segments):
        if rule_holds(rule, truth):
            mask |= 1 << i
    return mask


class _Watch:
    """Sign steps of ``metric - bound`` for one state, sharing the score's pieces."""

    def __init__(self, state: CustomerState, model: Model) -> None:
        self.state, self.model, self.clock = state, model, state.clock_ms
        self.values = state.dimension_values(model)
        self.score_fn = ExpSum.of(
            (LN2 / h, v) for v, h in zip(self.values, model.half_lives_ms, strict=True)
        )
        self._score_pieces: tuple[tuple[float, int], ...] | None = None
        self._memo: dict[tuple[str, float], SignSteps] = {}

    def score(self, bound: float) -> SignSteps:
        memo = self._memo.get(("score", bound))
        if memo is not None:
            return memo
        state, model = self.state, self.model
        if self._score_pieces is None:
            self._score_pieces = _pieces(self.score_fn)

        def exact(t: float) -> float:
            return math.fsum(decayed_values(state, model, t)) - bound

        steps = sign_steps(
            self.score_fn.plus(-bound), origin=self.clock, exact=exact, pieces=self._score_pieces
        )
        self._memo["score", bound] = steps
        return steps

    def dimension(self, index: int, bound: float) -> SignSteps:
        value, half_life, clock = self.values[index], self.model.half_lives_ms[index], self.clock

        def exact(t: float) -> float:
            return value * decay_factor(t - clock, half_life) - bound

        fn = ExpSum.of(((LN2 / half_life, value), (0.0, -bound)))
        return sign_steps(fn, origin=clock, exact=exact)

    def days_since(self, name: str, bound: float) -> SignSteps:
        last, clock = self.state.last_seen_of(self.model, name), self.clock
        if last is None:
            return SignSteps(clock, 1)  # never: infinitely long ago
        since = last

        def exact(t: float) -> float:
            return (t - since) / DAY_MS - bound

        v0 = exact(clock)
        if v0 >= 0:
            return SignSteps(clock, 1)
        hi = since + bound * DAY_MS
        step = max(abs(hi) * 2.0**-50, 1e-300)
        while math.isfinite(hi) and exact(hi) < 0:
            hi += step
            step *= 2.0
        if not math.isfinite(hi):
            return SignSteps(clock, -1)
        return SignSteps(clock, -1, ((first_change(clock, v0, hi, exact(hi), exact, old=-1), 1),))

    def condition(self, condition: Condition) -> SignSteps | bool:
        kind, bound = condition.kind, condition.value
        if kind == "nps":
            return holds(condition.op, self.state.nps_category, bound)
        if isinstance(bound, str):  # pragma: no cover - the model forbids it
            raise ScoringError(f"{condition.metric}: a numeric metric needs a numeric value")
        key = (condition.metric, bound)
        steps = self._memo.get(key)
        if steps is None:
            if kind == "score":
                steps = self.score(bound)
            elif kind == "dimension":
                steps = self.dimension(self.model.dimension_index(condition.arg), bound)
            else:
                steps = self.days_since(condition.arg, bound)
            self._memo[key] = steps
        return steps
