"""A customer's metrics at one time (:class:`Point`) and from a state's clock on
(:class:`Timeline`), and the cheap certainties of which side of a bound they keep.

Between events the dimension values decay (:func:`scoring.decay.decay`), the score is
their sum, the last times of event types stand still and the NPS answer is constant.
A :class:`Timeline` holds what every question about the future asks for: the values at
the clock, the sums of their positive and negative parts (bounds of the score for
good), and, built once on first use, the score as a sum of exponentials and its exact
value at any later time.

>>> rates = ((0.0006931471805599453, (0,)), (0.0013862943611198906, (1,)))
>>> line = Timeline(0.0, (8.0, -2.0), (), None, half_lives=(1000.0, 500.0), rates=rates)
>>> line.score, line.above, line.below, line.at(1000.0).values, line.score_then(1000.0)
(6.0, 8.0, -2.0, (4.0, -0.5), None)
>>> side(10.0, line.score, high=line.above), side(-3.0, line.score, low=line.below)
(-1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from scoring.decay import ExpSum, decay
from scoring.roots import monotone_pieces

__all__ = ["DAY_MS", "MARGIN", "Point", "Timeline", "days_side", "side"]

DAY_MS = 86_400_000
#: How far from a bound, relative to the magnitudes involved, a value surely is on
#: its side: a million times the rounding error of an evaluation (a few ulps).
MARGIN = 1e-9
_INF = math.inf

Pieces = tuple[tuple[float, int], ...]


class Point:
    """A customer's metrics at the time ``clock``: the dimension ``values``, their sum
    ``score``, the last time of each tracked event type (``last_seen``; empty: never)
    and the latest NPS answer."""

    __slots__ = ("clock", "last_seen", "nps_score", "score", "values")

    def __init__(
        self,
        clock: float,
        values: Sequence[float],
        score: float,
        last_seen: Sequence[int | None],
        nps_score: int | None,
    ) -> None:
        self.clock, self.values, self.score = clock, values, score
        self.last_seen, self.nps_score = last_seen, nps_score


class Timeline(Point):
    """The metrics of a state from its clock on, given the dimensions' half-lives (ms,
    positive and finite) and their decay rates ``LN2 / half-life``, ascending, each
    with its dimensions in order. The values must be finite."""

    __slots__ = ("_fn", "_pieces", "_terms", "_then", "above", "below", "half_lives", "rates")

    def __init__(
        self,
        clock: float,
        values: Sequence[float],
        last_seen: Sequence[int | None],
        nps_score: int | None,
        *,
        half_lives: Sequence[float],
        rates: Sequence[tuple[float, Sequence[int]]],
    ) -> None:
        self.clock, self.values, self.score = clock, values, math.fsum(values)
        self.last_seen, self.nps_score = last_seen, nps_score
        self.half_lives, self.rates = half_lives, rates
        self.above = math.fsum([v for v in values if v > 0])
        self.below = math.fsum([v for v in values if v < 0])
        self._terms: list[tuple[float, float]] | None = None
        self._fn: ExpSum | None = None
        self._pieces: Pieces | None = None
        self._then = (_INF, 0.0)

    @property
    def monotone(self) -> bool:
        """Whether the score only moves one way: its values share a sign."""
        return not self.above > 0 > self.below

    def at(self, t: float) -> Point:
        """The metrics at ``t``, the values decayed as :func:`scoring.state.decayed_values`."""
        values = tuple(self.decayed(i, t) for i in range(len(self.values)))
        return Point(t, values, math.fsum(values), self.last_seen, self.nps_score)

    def decayed(self, slot: int, t: float) -> float:
        """Dimension ``slot``'s value at ``t``."""
        v = self.values[slot]
        return v * decay(t - self.clock, self.half_lives[slot]) if v else v

    def score_then(self, until: float) -> float | None:
        """The score at ``until`` when it is :attr:`monotone` (else None); the last asked."""
        if self.above > 0 > self.below:
            return None
        if self._then[0] != until:
            dt = until - self.clock
            self._then = (until, math.fsum([v * decay(dt, h) for v, h in self._nonzero()]))
        return self._then[1]

    def score_exact(self, bound: float) -> Callable[[float], float]:
        """The score minus ``bound`` at ``t >= clock``, exactly as the state computes it."""
        terms, fsum, clock = self._nonzero(), math.fsum, self.clock

        def exact(t: float) -> float:
            dt = t - clock
            return fsum([v * decay(dt, h) for v, h in terms]) - bound

        return exact

    def _nonzero(self) -> list[tuple[float, float]]:
        """(value, half-life) of the dimensions whose value is not 0."""
        if self._terms is None:
            pairs = zip(self.values, self.half_lives, strict=True)
            self._terms = [(v, h) for v, h in pairs if v]
        return self._terms

    def score_function(self) -> ExpSum:
        """The score as an ExpSum: :meth:`ExpSum.of`, the rates merged and sorted once."""
        if self._fn is None:
            values, terms = self.values, []
            for rate, group in self.rates:
                total = 0.0  # added up in order from 0.0, as ExpSum.of merges
                for i in group:
                    total += values[i]
                if total != 0.0:
                    terms.append((rate, total))
            finite = all(math.isfinite(c) for _, c in terms)
            fn = ExpSum.trusted(tuple(terms)) if finite else ExpSum(tuple(terms))  # (raises)
            self._fn = fn
        return self._fn

    def score_pieces(self) -> Pieces:
        """:func:`~scoring.roots.monotone_pieces` of the score, computed once."""
        if self._pieces is None:
            self._pieces = monotone_pieces(self.score_function())
        return self._pieces


def side(
    bound: float,
    now: float,
    then: float | None = None,
    *,
    high: float = _INF,
    low: float = -_INF,
    scale: float = 0.0,
) -> int:
    """The side of ``bound`` (1 above, -1 below) a metric surely keeps; 0 if unsure.

    ``high`` and ``low`` bound the metric for good: for a score or a dimension the
    sums of its positive and of its negative values, since every decayed term lies
    between 0 and its value (the computed sums too: rounding is monotone).

    Else a *monotone* metric, computed as ``now`` and ``then`` at two times, keeps
    its side in between if it is on it at both by ``MARGIN`` (relative to ``scale``,
    the sum of the magnitudes of its terms, and the bound): the search only reports
    a change where a computed value lies on the other side, and a computed value is
    within a few ulps of the true one, which lies between its values at the two ends.
    """
    if high - bound < 0:
        return -1
    if low - bound > 0:
        return 1
    if then is None:
        return 0
    now, then = now - bound, then - bound
    margin = MARGIN * (scale + abs(bound)) + 1e-300
    if now > margin and then > margin:
        return 1
    return -1 if now < -margin and then < -margin else 0


def days_side(last: int | None, clock: float, until: float, bound: float) -> int:
    """:func:`side` for ``days_since - bound`` (``last``: the last such event, if any).

    ``(t - last) / DAY_MS - bound`` is non-decreasing in ``t`` as computed in floats,
    so once at or above the bound it stays there, and below it at ``until`` it was
    below it all along.
    """
    if last is None or (clock - last) / DAY_MS - bound >= 0:
        return 1
    return -1 if (until - last) / DAY_MS - bound < 0 else 0
