"""Tracks: the sign of each ``metric - bound`` of a state as time passes.

:mod:`scoring.crossing` looks for the first moment a tier bound or a segment
condition changes side. Each such ``metric - bound`` is a :class:`Track`: its
right-limit sign now, and its sign changes found lazily by the exact searches of
:mod:`scoring.decay` (a change is first known as a bracket ``(lo, hi]`` and only
shrunk as far as the caller needs). A :class:`Watch` holds the tracks of one state
and evaluates the tier and segment mask their signs give.

Cheap certainties spare most searches (see :func:`side`): a bound out of the reach
of the values never changes side, and a monotone metric that is on the same side,
by a wide margin, at two times does not change side in between.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from scoring.decay import LN2, ExpSum, decay, decay_factor, sign
from scoring.model import DAY_MS, Model
from scoring.plan import Check, Plan, plan
from scoring.roots import Root, SignStream
from scoring.roots import monotone_pieces as _pieces
from scoring.segments import holds
from scoring.state import CustomerState, decayed_values

__all__ = ["MARGIN", "Track", "Watch", "days_side", "side"]

_INF = math.inf

#: How far from a bound, relative to the magnitudes involved, a value surely is on
#: its side: a million times the rounding error of an evaluation (a few ulps).
MARGIN = 1e-9


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


class Track:
    """The right-limit sign of ``metric - bound`` from the clock on.

    ``sign`` holds now; the next change lies in ``(lo, hi]`` (``hi`` is infinite
    until a root brackets it, ``lo`` once there is no change left) and is ``hi``
    itself once ``exact``. The search starts on first use, from ``v0``, the value
    at the clock.
    """

    __slots__ = (
        "_items",
        "_start",
        "bound",
        "fresh",
        "hi",
        "kind",
        "lo",
        "root",
        "sign",
        "slot",
        "tried",
        "v0",
    )

    def __init__(
        self,
        sign: int,
        origin: float,
        start: Callable[[Track], Iterator[Root | float]] | None = None,
        *,
        kind: str = "",
        slot: int = -1,
        bound: float = 0.0,
        v0: float = 0.0,
    ) -> None:
        self.sign, self.kind, self.slot, self.bound, self.v0 = sign, kind, slot, bound, v0
        self.fresh = True  # no change taken yet: ``sign`` is the sign at the clock
        self.tried = _INF  # the last time it was checked to be quiet until
        self._start = start
        self._items: Iterator[Root | float] | None = None
        self.root: Root | None = None
        self.lo = _INF if start is None else origin
        self.hi = _INF

    @property
    def exact(self) -> bool:
        return self.root is not None and self.root.done

    def search(self) -> None:
        """Narrow the next change: shrink its bracket, or search on for one."""
        root = self.root
        if root is not None:
            root.step()
        else:
            if self._items is None:
                assert self._start is not None
                self._items = self._start(self)
            item = next(self._items, None)
            if item is None:
                self.lo = _INF
                return
            if not isinstance(item, Root):
                self.lo = max(self.lo, item)
                return
            self.root = root = item
        self._bracket(root)

    def narrow(self, below: float) -> None:
        """Shrink the bracket until it ends at or before ``below``, or is exact."""
        root = self.root
        assert root is not None
        root.shrink(below)
        self._bracket(root)

    def _bracket(self, root: Root) -> None:
        self.lo = math.nextafter(root.b, -_INF) if root.done else max(self.lo, root.a)
        self.hi = root.b

    def take(self) -> Root:
        """Pass the next change (which must be bracketed); returns its root."""
        root = self.root
        assert root is not None
        self.sign, self.root, self.fresh = -root.old, None, False
        self.lo, self.hi = root.b, _INF
        return root


def _cost(track: Track) -> int:
    return _COSTS[track.kind]


_COSTS = {"days_since": 0, "dimension": 1, "score": 2, "": 3}

#: Tracks that never change: a metric always above or below its bound, a constant.
ABOVE, BELOW, FIXED = Track(1, 0.0), Track(-1, 0.0), Track(0, 0.0)

Truth = tuple[bool, bool, bool]  # whether a condition holds for the signs -1, 0, 1


class Watch:
    """The tracks of one state: the tier's bounds and every segment condition.

    A track's sign at the clock is known from the values at once; its search for
    changes only starts when needed. A condition is a track with the truth of its
    operator for each sign; a constant one (``nps``, a bound out of reach) has a
    track that never changes, and a rule decided for good keeps no other.
    """

    def __init__(self, state: CustomerState, model: Model) -> None:
        p: Plan = plan(model)
        self.state, self.model, self.clock = state, model, state.clock_ms
        self.finite = p.finite_half_lives
        self.values = values = state.dimension_values(model)
        self.half_lives = half_lives = model.half_lives_ms
        if not all(map(math.isfinite, values)):  # raises, as building the score does
            ExpSum.of((LN2 / h, v) for v, h in zip(values, half_lives, strict=True))
        if not self.finite:  # pragma: no cover - raises where evaluating every bound would
            decayed_values(state, model, self.clock)
            for check in (c for _, checks in p.rules for c in checks if c.kind == "dimension"):
                decay_factor(0.0, half_lives[check.slot])
        self.total = math.fsum(values)
        self.above = math.fsum([v for v in values if v > 0])
        self.below = math.fsum([v for v in values if v < 0])
        self.rates = p.rates
        self._terms = [(v, h) for v, h in zip(values, half_lives, strict=True) if v]
        self._score_fn: ExpSum | None = None
        self._score_pieces: tuple[tuple[float, int], ...] | None = None
        self._score_at = (_INF, 0.0)
        self._memo: dict[tuple[str, float], Track] = {}
        up, down = p.up[state.tier], p.down[state.tier]
        self.up = None if up is None else self.track("score", "score", -1, up)
        self.down = None if down is None else self.track("score", "score", -1, down)
        category = state.nps_category
        self.rules: list[tuple[bool, list[tuple[Truth, Track]]]] = []
        for every, checks in p.rules:
            conditions: list[tuple[Truth, Track]] = []
            for check in checks:  # cheapest first
                truth, track = self._condition(check, category)
                if track.lo == _INF and truth[track.sign + 1] != every:
                    conditions = [(truth, track)]  # decided for good: no other can matter
                    break
                conditions.append((truth, track))
            self.rules.append((every, conditions))

    def outcome(self) -> tuple[int, int]:
        """Tier and segment mask for the tracks' current signs."""
        tier = self.state.tier
        if self.up is not None and self.up.sign >= 0:
            tier += 1
        elif self.down is not None and self.down.sign < 0:
            tier -= 1
        mask = 0
        for i, (every, conditions) in enumerate(self.rules):
            for truth, track in conditions:
                if truth[track.sign + 1] != every:
                    mask |= (not every) << i
                    break
            else:
                mask |= every << i
        return tier, mask

    def active(self) -> list[Track]:
        """Tracks with changes left whose changes can still move the outcome, the
        cheapest to search first."""
        found = [t for t in (self.up, self.down) if t is not None and t.lo != _INF]
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

    def quiet(self, track: Track, until: float) -> bool:
        """True if ``track``, not changed yet, surely does not change until ``until``."""
        if track.kind == "days_since":
            return days_side(self.state.last_seen[track.slot], self.clock, until, track.bound) < 0
        if not self.finite:  # pragma: no cover - half-lives beyond 1e300 days
            return False
        if track.kind == "score":
            if self.above > 0 > self.below:  # terms of both signs: not monotone
                return False
            if self._score_at[0] != until:
                self._score_at = (until, self._score_exact(0.0)(until))
            then, scale = self._score_at[1], self.above - self.below
            now = self.total
        else:
            now = value = self.values[track.slot]
            then = value * decay(until - self.clock, self.half_lives[track.slot])
            scale = abs(value)
        return side(track.bound, now, then, scale=scale) != 0

    # ------------------------------------------------------------------ tracks

    def _condition(self, check: Check, category: str | None) -> tuple[Truth, Track]:
        if check.kind == "nps":
            truth = holds(check.op, category, check.value)
            return (truth, truth, truth), FIXED
        bound = check.value
        assert not isinstance(bound, str)  # the model forbids it
        return check.truth, self.track(check.metric, check.kind, check.slot, bound)

    def track(self, metric: str, kind: str, slot: int, bound: float) -> Track:
        """The track of ``metric - bound``, shared by every user of the pair."""
        track = self._memo.get((metric, bound))
        if track is None:
            track = self._memo[metric, bound] = self._new(kind, slot, bound)
        return track

    def _new(self, kind: str, slot: int, bound: float) -> Track:
        clock = self.clock
        if kind == "days_since":
            last = self.state.last_seen[slot] if self.state.last_seen else None
            if days_side(last, clock, -_INF, bound) > 0:
                return ABOVE  # never (infinitely long ago), or already past the bound
            assert last is not None
            v0 = (clock - last) / DAY_MS - bound
            return Track(-1, clock, self._start, kind=kind, slot=slot, bound=bound, v0=v0)
        if kind == "score":
            now, high, low = self.total, self.above, self.below
        else:
            now = self.values[slot]
            high, low = max(now, 0.0), min(now, 0.0)
        if high - bound < 0:  # out of reach, as in :func:`side`
            return BELOW
        if low - bound > 0:
            return ABOVE
        v0 = now - bound
        track = Track(sign(v0), clock, self._start, kind=kind, slot=slot, bound=bound, v0=v0)
        if not v0:  # on the bound: the stream knows the direction it leaves in
            track.sign = self._stream(track).initial
        return track

    def _start(self, track: Track) -> Iterator[Root | float]:
        if track.kind == "days_since":
            last = self.state.last_seen[track.slot]
            assert last is not None
            return _days_since(last, self.clock, track.bound, track.v0)
        return iter(self._stream(track))

    def _stream(self, track: Track) -> SignStream:
        bound, clock = track.bound, self.clock
        if track.kind == "dimension":
            value, half_life = self.values[track.slot], self.half_lives[track.slot]

            def exact(t: float) -> float:
                return value * decay_factor(t - clock, half_life) - bound

            fn = ExpSum.of(((LN2 / half_life, value), (0.0, -bound)))
            return SignStream(fn, origin=clock, exact=exact, v0=track.v0)
        terms = self._score().terms  # positive rates: the constant goes first
        return SignStream(
            ExpSum.trusted(((0.0, -bound), *terms) if bound else terms),
            origin=clock,
            exact=self._score_exact(bound),
            pieces=self._pieces,
            v0=track.v0,
        )

    def _score(self) -> ExpSum:
        """The score as an ExpSum: :meth:`ExpSum.of`, with the rates merged and sorted once."""
        if self._score_fn is None:
            values, terms = self.values, []
            for rate, group in self.rates:
                total = 0.0  # added up in order from 0.0, as ExpSum.of merges
                for i in group:
                    total += values[i]
                if total != 0.0:
                    terms.append((rate, total))
            finite = all(math.isfinite(c) for _, c in terms)
            fn = ExpSum.trusted(tuple(terms)) if finite else ExpSum(tuple(terms))  # (raises)
            self._score_fn = fn
        return self._score_fn

    def _pieces(self) -> tuple[tuple[float, int], ...]:
        if self._score_pieces is None:
            self._score_pieces = _pieces(self._score())
        return self._score_pieces

    def _score_exact(self, bound: float) -> Callable[[float], float]:
        """The score minus ``bound`` at ``t >= clock``, exactly as :func:`decayed_values`."""
        state, model, clock = self.state, self.model, self.clock
        if not self.finite:  # pragma: no cover - half-lives beyond 1e300 days

            def checked(t: float) -> float:
                return math.fsum(decayed_values(state, model, t)) - bound

            return checked
        terms, fsum = self._terms, math.fsum

        def exact(t: float) -> float:
            dt = t - clock
            return fsum([v * decay(dt, h) for v, h in terms]) - bound

        return exact


def _days_since(last: float, clock: float, bound: float, v0: float) -> Iterator[Root | float]:
    """The one change of ``days_since - bound`` (from below to >= 0), found exactly.

    The function is non-decreasing as computed (see :func:`days_side`), so its sign
    changes at one float: the one a :class:`~scoring.roots.Root` finds from any
    bracket. It is found from the estimate ``last + bound * DAY_MS``, a few floats
    away, past which the search for a bracket goes as :mod:`scoring.decay`'s did.
    """

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
    yield Root.at(Root(clock, v0, hi, exact(hi), exact, old=-1).refine(), old=-1)
