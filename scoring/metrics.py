"""The kinds of metric a segment condition compares: one small contract each.

A condition is ``metric op value`` (``score >= 20``, ``dimension.web >= 10``,
``days_since.any < 7``, ``nps.category == "promoter"``). Everything the core asks of a
metric goes through its kind's :class:`Metric`, looked up once when a model is parsed:

* the model: is ``kind.arg`` a metric of this model, which slot of the state holds it,
  does it need the last time of an event type (:meth:`~Metric.accepts`,
  :meth:`~Metric.slot`, :meth:`~Metric.tracked`), is it compared with a category;
* value at a time: :meth:`~Metric.value` at a :class:`~scoring.timeline.Point`, and
  whether a condition holds there (after an event);
* which side of a bound it surely keeps from the clock until a time, or that it
  cannot change without an event (:meth:`~Metric.side`, :meth:`~Metric.constant`):
  the cheap test behind :func:`scoring.crossing.quiet_until`;
* sign behaviour: the right-limit sign of ``metric - bound`` from the clock on and
  its changes, found exactly and lazily (:meth:`~Metric.track`, :meth:`~Metric.changes`);
* cost: how cheap it is to watch; conditions are checked and searched cheapest first.

>>> [(m.kind, m.cost) for m in sorted(KINDS.values(), key=lambda m: m.cost)]
[('nps', 0), ('days_since', 1), ('dimension', 2), ('score', 3)]
>>> resolve("days_since.any", (), ()), resolve("score.x", (), ())
(<metric days_since>, None)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from scoring.decay import LN2, ExpSum, decay, sign
from scoring.nps import CATEGORIES, category
from scoring.roots import Root, SignStream
from scoring.rules import TRUTH, Truth
from scoring.timeline import DAY_MS, Point, Timeline, days_side, side
from scoring.track import ABOVE, BELOW, Track

__all__ = ["ANY", "KINDS", "SCORE", "Check", "Metric", "resolve"]

#: ``days_since.any``: the last event of any type.
ANY = "any"
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Check:
    """A segment condition, compiled: its metric's kind and the slot of the state
    holding it (a dimension or tracked-type index, else -1)."""

    name: str
    metric: Metric
    slot: int
    op: str
    value: float | str
    #: Whether ``metric op value`` holds when ``metric - value`` has the sign -1, 0, 1.
    truth: Truth = field(repr=False)
    #: ``metric op value`` as a function of the metric's value and ``value``
    #: (:func:`scoring.rules.holds` for the values a model allows).
    compare: Callable[[Any, Any], bool] = field(repr=False)

    @classmethod
    def of(cls, name: str, metric: Metric, slot: int, op: str, value: float | str) -> Check:
        """The check of ``name op value`` (``metric``: its kind, ``slot``: where it is)."""
        return cls(name, metric, slot, op, value, TRUTH[op], _COMPARE[op])

    @property
    def bound(self) -> float:
        """``value``, of a metric compared with numbers."""
        value = self.value
        assert not isinstance(value, str)  # the model forbids it
        return value


class Metric:
    """The contract of one kind of metric (``kind`` is the part before the dot)."""

    kind: ClassVar[str] = ""
    #: How the kind is written in a model file, for error messages.
    spelling: ClassVar[str] = ""
    #: How cheap it is to watch (0 cheapest): the order conditions are checked in.
    cost: ClassVar[int] = 0
    #: The values it is compared with (``==`` and ``!=`` only), or None for numbers.
    categories: ClassVar[tuple[str, ...] | None] = None

    def __repr__(self) -> str:
        return f"<metric {self.kind}>"

    def accepts(
        self, arg: str | None, dimensions: Collection[str], event_types: Collection[str]
    ) -> bool:
        """Whether ``kind.arg`` (``arg`` None: no dot) is a metric of such a model."""
        raise NotImplementedError

    def tracked(self, arg: str) -> str | None:
        """The event type (or ``any``) whose last time the metric needs, if any."""
        return None

    def slot(self, arg: str, dimensions: Sequence[str], tracked: Sequence[str]) -> int:
        """Where a state holds the metric: a dimension or tracked index (else -1)."""
        return -1

    def value(self, at: Point, slot: int) -> float | str | None:
        """The metric's value at ``at.clock``."""
        raise NotImplementedError

    def holds(self, at: Point, check: Check) -> bool:
        """Whether ``check`` holds at ``at.clock`` (``>=`` holds at equality)."""
        return check.compare(self.value(at, check.slot), check.value)

    def constant(self, at: Point, check: Check) -> bool | None:
        """The truth of ``check`` if no time passing can change it, else None."""
        return None

    def side(self, line: Timeline, slot: int, bound: float, until: float) -> int:
        """The side of ``bound`` (1: at or above, -1: below) the metric surely keeps
        from the clock to ``until``; 0 if unsure."""
        raise NotImplementedError

    def truth_until(self, line: Timeline, check: Check, until: float) -> bool | None:
        """The truth of ``check`` from the clock to ``until`` when sure, else None."""
        truth = self.constant(line, check)
        if truth is not None:
            return truth
        at = self.side(line, check.slot, check.bound, until)
        return check.truth[at + 1] if at else None

    def track(self, line: Timeline, slot: int, bound: float) -> Track:
        """The right-limit sign of ``metric - bound`` from the clock on; its changes
        are searched for (:meth:`changes`) only when asked for."""
        raise NotImplementedError

    def changes(self, line: Timeline, track: Track) -> Iterator[Root | float]:
        """The sign changes of ``track`` (made by :meth:`track`), in time order."""
        raise NotImplementedError


class Numeric(Metric):
    """A metric compared with numbers, moving with time (its :meth:`constant` is None)."""

    def truth_until(self, line: Timeline, check: Check, until: float) -> bool | None:
        at = self.side(line, check.slot, check.bound, until)
        return check.truth[at + 1] if at else None


class Score(Numeric):
    """``score``: the sum of the dimension values, a sum of exponentials in time."""

    kind = "score"
    spelling = "score"
    cost = 3

    def accepts(
        self, arg: str | None, dimensions: Collection[str], event_types: Collection[str]
    ) -> bool:
        return arg is None

    def value(self, at: Point, slot: int) -> float:
        return at.score

    def holds(self, at: Point, check: Check) -> bool:
        return check.compare(at.score, check.value)

    def side(self, line: Timeline, slot: int, bound: float, until: float) -> int:
        above, below = line.above, line.below
        then = line.score_then(until)
        return side(bound, line.score, then, high=above, low=below, scale=above - below)

    def track(self, line: Timeline, slot: int, bound: float) -> Track:
        if line.above - bound < 0:  # out of reach, as in :func:`side`
            return BELOW
        if line.below - bound > 0:
            return ABOVE
        v0 = line.score - bound
        track = Track(sign(v0), line, self, cost=self.cost, slot=slot, bound=bound, v0=v0)
        if not v0:  # on the bound: the stream knows the direction it leaves in
            track.sign = self._stream(line, bound, v0).initial
        return track

    def changes(self, line: Timeline, track: Track) -> Iterator[Root | float]:
        return iter(self._stream(line, track.bound, track.v0))

    @staticmethod
    def _stream(line: Timeline, bound: float, v0: float) -> SignStream:
        terms = line.score_function().terms  # positive rates: the constant goes first
        return SignStream(
            ExpSum.trusted(((0.0, -bound), *terms) if bound else terms),
            origin=line.clock,
            exact=line.score_exact(bound),
            pieces=line.score_pieces,
            v0=v0,
        )


class Dimension(Numeric):
    """``dimension.<d>``: one dimension's value, decaying with its half-life."""

    kind = "dimension"
    spelling = "dimension.<dimension>"
    cost = 2

    def accepts(
        self, arg: str | None, dimensions: Collection[str], event_types: Collection[str]
    ) -> bool:
        return arg in dimensions

    def slot(self, arg: str, dimensions: Sequence[str], tracked: Sequence[str]) -> int:
        return dimensions.index(arg)

    def value(self, at: Point, slot: int) -> float:
        return at.values[slot]

    def holds(self, at: Point, check: Check) -> bool:
        return check.compare(at.values[check.slot], check.value)

    def side(self, line: Timeline, slot: int, bound: float, until: float) -> int:
        v = line.values[slot]
        then = line.decayed(slot, until)
        return side(bound, v, then, high=max(v, 0.0), low=min(v, 0.0), scale=abs(v))

    def track(self, line: Timeline, slot: int, bound: float) -> Track:
        now = line.values[slot]
        if max(now, 0.0) - bound < 0:  # out of reach, as in :func:`side`
            return BELOW
        if min(now, 0.0) - bound > 0:
            return ABOVE
        v0 = now - bound
        track = Track(sign(v0), line, self, cost=self.cost, slot=slot, bound=bound, v0=v0)
        if not v0:  # on the bound: the stream knows the direction it leaves in
            track.sign = self._stream(line, slot, bound, v0).initial
        return track

    def changes(self, line: Timeline, track: Track) -> Iterator[Root | float]:
        return iter(self._stream(line, track.slot, track.bound, track.v0))

    @staticmethod
    def _stream(line: Timeline, slot: int, bound: float, v0: float) -> SignStream:
        value, half_life, clock = line.values[slot], line.half_lives[slot], line.clock

        def exact(t: float) -> float:
            return value * decay(t - clock, half_life) - bound

        fn = ExpSum.of(((LN2 / half_life, value), (0.0, -bound)))
        return SignStream(fn, origin=clock, exact=exact, v0=v0)


class DaysSince(Numeric):
    """``days_since.<type>`` / ``days_since.any``: fractional days since the last such
    event, infinite if never; it grows linearly, so it crosses a bound once, upward."""

    kind = "days_since"
    spelling = "days_since.<event type>, days_since.any"
    cost = 1

    def accepts(
        self, arg: str | None, dimensions: Collection[str], event_types: Collection[str]
    ) -> bool:
        return arg == ANY or arg in event_types

    def tracked(self, arg: str) -> str:
        return arg

    def slot(self, arg: str, dimensions: Sequence[str], tracked: Sequence[str]) -> int:
        return tracked.index(arg)

    def value(self, at: Point, slot: int) -> float:
        last = at.last_seen[slot] if at.last_seen else None
        return _INF if last is None else (at.clock - last) / DAY_MS

    def side(self, line: Timeline, slot: int, bound: float, until: float) -> int:
        last = line.last_seen[slot] if line.last_seen else None
        return days_side(last, line.clock, until, bound)

    def track(self, line: Timeline, slot: int, bound: float) -> Track:
        last = line.last_seen[slot] if line.last_seen else None
        if days_side(last, line.clock, -_INF, bound) > 0:
            return ABOVE  # never (infinitely long ago), or already past the bound
        assert last is not None
        v0 = (line.clock - last) / DAY_MS - bound
        return Track(-1, line, self, cost=self.cost, slot=slot, bound=bound, v0=v0)

    def changes(self, line: Timeline, track: Track) -> Iterator[Root | float]:
        """The one change of ``days_since - bound`` (from below to >= 0), found exactly.

        The function is non-decreasing as computed (see :func:`days_side`), so its sign
        changes at one float: the one a :class:`Root` finds from any bracket. It is found
        from the estimate ``last + bound * DAY_MS``, a few floats away, past which the
        search for a bracket goes as the root search's does.
        """
        last, clock, bound = line.last_seen[track.slot], line.clock, track.bound
        assert last is not None

        def exact(t: float) -> float:
            return (t - last) / DAY_MS - bound

        hi = last + bound * DAY_MS
        step = max(abs(hi) * 2.0**-50, 1e-300)
        while math.isfinite(hi) and exact(hi) < 0:
            hi += step
            step *= 2.0
        if not math.isfinite(hi):
            return
        for _ in range(8):
            below = math.nextafter(hi, -_INF)
            if below <= clock or exact(below) < 0:
                yield Root.at(hi, old=-1)
                return
            hi = below
        yield Root.at(Root(clock, track.v0, hi, exact(hi), exact, old=-1).refine(), old=-1)


class Nps(Metric):
    """``nps.category``: the latest answer's category (None if never answered, so
    ``==`` is false and ``!=`` true); it does not change between events."""

    kind = "nps"
    spelling = "nps.category"
    cost = 0
    categories = CATEGORIES

    def accepts(
        self, arg: str | None, dimensions: Collection[str], event_types: Collection[str]
    ) -> bool:
        return arg == "category"

    def value(self, at: Point, slot: int) -> str | None:
        return None if at.nps_score is None else category(at.nps_score)

    def constant(self, at: Point, check: Check) -> bool:
        return self.holds(at, check)

    def truth_until(self, line: Timeline, check: Check, until: float) -> bool:
        return self.constant(line, check)


_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType(
    {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
        "==": operator.eq,
        "!=": operator.ne,
    }
)
SCORE = Score()
#: Every kind of metric by name, in the order a model file's error message lists them.
KINDS: Mapping[str, Metric] = MappingProxyType(
    {m.kind: m for m in (SCORE, Dimension(), Nps(), DaysSince())}
)


def resolve(
    metric: str, dimensions: Collection[str], event_types: Collection[str]
) -> Metric | None:
    """The kind of ``metric`` (e.g. ``dimension.web``) in such a model, or None."""
    kind, dot, arg = metric.partition(".")
    found = KINDS.get(kind)
    if found is None or not found.accepts(arg if dot else None, dimensions, event_types):
        return None
    return found
