"""A watch: the tracks of one state, and the tier and segments their signs give.

:mod:`scoring.crossing` looks for the first moment a tier bound or a segment
condition changes side. A :class:`Watch` holds one :class:`~scoring.track.Track` per
``metric - bound`` of a state (each made by its metric, :mod:`scoring.metrics`) and
evaluates the tier and segment mask their current signs give.

Cheap certainties spare most searches: a bound out of reach of the values never
changes side (a constant track), a condition that cannot change without an event
(``nps``) is constant, and a rule decided for good keeps no other track.
"""

from __future__ import annotations

import math
import operator

from scoring.decay import LN2, ExpSum
from scoring.metrics import SCORE, Check, Metric
from scoring.model import Model
from scoring.rules import Truth, fold
from scoring.state import CustomerState, timeline
from scoring.track import ABOVE, BELOW, FIXED, Track

__all__ = ["Watch"]

_INF = math.inf


class Watch:
    """The tracks of one state: the tier's bounds and every segment condition.

    A track's sign at the clock is known from the values at once; its search for
    changes only starts when needed. A condition is a track with the truth of its
    operator for each sign; a constant one (``nps``, a bound out of reach) has a
    track that never changes, and a rule decided for good keeps no other.
    """

    def __init__(self, state: CustomerState, model: Model) -> None:
        p = model.plan
        values = state.dimension_values(model)
        if not all(map(math.isfinite, values)):  # raises, as building the score does
            ExpSum.of((LN2 / h, v) for v, h in zip(values, model.half_lives_ms, strict=True))
        self.state, self.bounds = state, p.tiers
        self.line = timeline(state, model, values)
        self._memo: dict[tuple[str, float], Track] = {}
        up, down = p.tiers.up[state.tier], p.tiers.down[state.tier]
        self.up = BELOW if up is None else self.track(SCORE.kind, SCORE, -1, up)
        self.down = ABOVE if down is None else self.track(SCORE.kind, SCORE, -1, down)
        self.rules: list[tuple[bool, list[tuple[Truth, Track]]]] = []
        for every, checks in p.rules:
            conditions: list[tuple[Truth, Track]] = []
            for check in checks:  # cheapest first
                truth, track = self._condition(check)
                if track.lo == _INF and truth[track.sign + 1] != every:
                    conditions = [(truth, track)]  # decided for good: no other can matter
                    break
                conditions.append((truth, track))
            self.rules.append((every, conditions))

    def outcome(self) -> tuple[int, int]:
        """Tier and segment mask for the tracks' current signs."""
        tier = self.bounds.after_crossing(self.state.tier, self.up.sign, self.down.sign)
        mask = fold(self.rules, _truth)
        assert mask is not None  # every sign is known
        return tier, mask

    def active(self) -> list[Track]:
        """Tracks with changes left whose changes can still move the outcome, the
        cheapest to search first."""
        found = [t for t in (self.up, self.down) if t.lo != _INF]
        for every, conditions in self.rules:
            pending = []
            for truth, track in conditions:
                if track.lo != _INF:
                    pending.append(track)
                elif truth[track.sign + 1] != every:  # decided for good
                    break
            else:
                found.extend(t for t in pending if t not in found)
        found.sort(key=_cost)
        return found

    def _condition(self, check: Check) -> tuple[Truth, Track]:
        truth = check.metric.constant(self.line, check)
        if truth is not None:
            return (truth, truth, truth), FIXED
        return check.truth, self.track(check.name, check.metric, check.slot, check.bound)

    def track(self, name: str, metric: Metric, slot: int, bound: float) -> Track:
        """The track of ``name - bound``, shared by every user of the pair."""
        track = self._memo.get((name, bound))
        if track is None:
            track = self._memo[name, bound] = metric.track(self.line, slot, bound)
        return track


def _truth(condition: tuple[Truth, Track]) -> bool:
    truth, track = condition
    return truth[track.sign + 1]


_cost = operator.attrgetter("cost")
