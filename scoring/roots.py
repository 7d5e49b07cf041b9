"""The sign changes of a sum of exponentials: the one root search of the core.

:class:`SignStream` finds *every* point of ``s >= 0`` where the sign of an
:class:`~scoring.decay.ExpSum` ``f`` changes, exactly (to adjacent floats), without
sampling, and lazily:

* the critical points of ``f`` are the sign changes of ``f'``; ``f' * exp(r_1 * s)``
  is again a sum of exponentials with a non-zero constant and one exponential term
  fewer, so they are found recursively (:func:`monotone_pieces`; one rate: closed form);
* between consecutive critical points ``f`` is strictly monotone, so each piece holds
  at most one root and the ends of the piece bracket it;
* the last piece is unbounded: ``f`` tends to the sign of its slowest term, and the
  bracket is expanded geometrically until it holds the sign change;
* a bracket is a :class:`Root`, shrunk by Illinois false position with a bisection
  safeguard, step by step and only as far as the caller needs, until its ends are
  adjacent floats (:meth:`Root.refine`).

A caller that only wants the first change, or to compare one with another, pays for no
more. A sum whose decaying terms share a sign is known to be monotone without the
recursion.

Signs are *right-limit* signs: the sign of ``f`` just after a point, so a tangent
touch of zero is not a change, and a root at the origin takes the sign of the
function's direction there.

>>> f = ExpSum.of([(0.0, -0.2), (1.0, 1.8), (2.0, -3.0)])   # -0.2 + 1.8e^-s - 3e^-2s
>>> stream = SignStream(f)
>>> changes = [(round(r.refine(), 9), -r.old) for r in stream if isinstance(r, Root)]
>>> stream.initial, changes
(-1, [(0.792409609, 1), (1.915640592, -1)])
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator

from scoring.decay import ExpSum, sign

__all__ = ["Root", "SignStream", "monotone_pieces"]

_MAX_ITERATIONS = 4000


def monotone_pieces(f: ExpSum) -> tuple[tuple[float, int], ...]:
    """``[0, inf)`` cut into maximal pieces where ``f`` is strictly monotone.

    Returns ``(start, direction)`` pairs: from ``start`` to the next start ``f``
    increases (1) or decreases (-1); a constant function is one piece of direction 0.

    >>> f = ExpSum.of([(1.0, 1.0), (2.0, -1.0)])    # e^-s - e^-2s rises, then falls
    >>> [(round(s, 12), d) for s, d in monotone_pieces(f)]
    [(0.0, 1), (0.69314718056, -1)]
    """
    if f.is_constant:
        return ((0.0, 0),)
    direction = _monotone_direction(f)
    if direction:
        return ((0.0, direction),)
    slope = SignStream(f.derivative().scaled())  # (its roots, refined in order)
    changes = tuple((item.refine(), -item.old) for item in slope if isinstance(item, Root))
    return ((0.0, slope.initial), *changes)


def _monotone_direction(f: ExpSum) -> int:
    """The direction of ``f`` when all its decaying terms share a sign, else 0.

    Such an ``f`` is one monotone piece, and so is every derivative the recursion of
    :func:`monotone_pieces` would take. 0 also when that recursion could fail to
    build an intermediate sum (a coefficient under- or overflowing, rates merging),
    so that the caller takes it and raises as it does: the level-``k`` coefficients
    are a coefficient times ``k`` differences of rates, each between ``gap`` (the
    smallest rate or difference of rates) and the largest rate.
    """
    terms = f.terms[1:] if f.terms[0][0] == 0.0 else f.terms
    rising = terms[-1][1] < 0
    small, large = math.inf, 0.0
    for _, c in terms:
        if (c < 0) != rising:
            return 0
        small, large = min(small, abs(c)), max(large, abs(c))
    separate, shrink, grow = _rate_spread(tuple(r for r, _ in terms))
    if separate and math.log(small) + shrink > _LOG_TINY and math.log(large) + grow < _LOG_HUGE:
        return 1 if rising else -1
    return 0


_LOG_TINY, _LOG_HUGE = math.log(1e-300), math.log(1e300)


@functools.lru_cache(maxsize=256)
def _rate_spread(rates: tuple[float, ...]) -> tuple[bool, float, float]:
    """Whether the rates are far apart (relative to the largest), and the logarithms
    of the least and the most that ``len(rates)`` factors between half the smallest
    rate or difference of rates and twice the largest rate (at least 1) multiply by."""
    n, high = len(rates), rates[-1]
    gap = min([rates[0]] + [b - a for a, b in itertools.pairwise(rates)])
    return gap > 1e-12 * high, n * math.log(gap / 2.0), n * math.log(2.0 * max(high, 1.0))


class Root:
    """A sign change bracketed in ``(a, b]``, shrunk step by step.

    ``a`` has the sign ``old`` (or is where it starts), ``b`` another sign. Each
    :meth:`step` is one iteration of Illinois false position with a bisection
    whenever the bracket fails to halve, so the change lies in every ``(a, b]`` on the
    way; :meth:`refine` shrinks it to adjacent floats and returns the end where the
    sign is not ``old``, however many steps were taken before.

    >>> Root(0.0, -2.0, 2.0, 2.0, lambda x: x * x - 2.0, old=-1).refine()
    1.4142135623730951
    """

    __slots__ = (
        "_checkpoint",
        "_left",
        "_side",
        "_since",
        "a",
        "b",
        "done",
        "fa",
        "fb",
        "old",
        "value",
    )

    def __init__(
        self,
        lo: float,
        v_lo: float,
        hi: float,
        v_hi: float,
        value: Callable[[float], float],
        *,
        old: int,
    ) -> None:
        self.a, self.fa, self.b, self.fb = lo, v_lo, hi, v_hi
        self.value, self.old = value, old
        self.done = False
        self._side = 0
        self._checkpoint = hi - lo
        self._since = 0
        self._left = _MAX_ITERATIONS

    @classmethod
    def at(cls, x: float, *, old: int) -> Root:
        """A change known exactly: at ``x``, from the sign ``old``."""
        root = cls(math.nextafter(x, -math.inf), math.nan, x, math.nan, _unused, old=old)
        root.done = True
        return root

    def step(self) -> None:
        """One iteration; sets :attr:`done` once ``a`` and ``b`` are adjacent floats."""
        self.shrink(steps=1)

    def refine(self) -> float:
        """The change: ``b`` once the bracket is down to adjacent floats."""
        self.shrink()
        return self.b

    def shrink(self, below: float = -math.inf, *, steps: int = _MAX_ITERATIONS) -> None:
        """Iterate until :attr:`done`, ``b <= below`` or ``steps`` iterations are made."""
        a, fa, b, fb, old, value = self.a, self.fa, self.b, self.fb, self.old, self.value
        side, checkpoint, since, left = self._side, self._checkpoint, self._since, self._left
        while b > below and steps > 0:
            mid = a + (b - a) / 2.0
            if not a < mid < b or not left:
                self.done = True
                break
            left -= 1
            steps -= 1
            x = mid
            if since < 2 and (fa > 0) - (fa < 0) == old and (fb > 0) - (fb < 0) == -old:
                interpolated = a + (b - a) * (fa / (fa - fb))
                if a < interpolated < b:
                    x = interpolated
            fx = value(x)
            if (fx > 0) - (fx < 0) == old:
                a, fa = x, fx
                if side == -1:
                    fb /= 2.0
                side = -1
            else:
                b, fb = x, fx
                if side == 1:
                    fa /= 2.0
                side = 1
            since += 1
            if x == mid or b - a <= checkpoint / 2.0:
                checkpoint, since = b - a, 0
        self.a, self.fa, self.b, self.fb = a, fa, b, fb
        self._side, self._checkpoint, self._since, self._left = side, checkpoint, since, left


def _unused(x: float) -> float:  # pragma: no cover - a root known exactly is never stepped
    return math.nan


class SignStream:
    """The right-limit sign of ``f(x - origin)`` for ``x >= origin``: the initial sign
    at once, each change on demand.

    ``initial`` is the sign just after ``origin`` (0: ``f`` is identically zero).
    Iterating yields, in increasing order, either a float ``x`` (no change up to
    ``x``: a point the search has passed) or a :class:`Root` bracketing the next
    change, after which the sign is ``-root.old``. A root need not be refined before
    the next item is asked for: the search goes on from the end of its bracket, and a
    root refined later is the same float.

    ``exact(x)``, if given, evaluates a function with the same roots as ``f`` at the
    absolute point ``x`` (for example the score exactly as the state computes it):
    brackets and the final adjacent-float bracket use it, so that the points found
    agree bit for bit with later evaluations; ``v0`` may pass ``exact(origin)`` when it
    is known. ``pieces`` may pass :func:`monotone_pieces` of ``f``, computed once (they
    do not change when a constant is added).

    >>> f = ExpSum.of([(0.0, -1.0), (math.log(2.0), 4.0)])      # 4 * 2^-s - 1: 0 at s = 2
    >>> stream = SignStream(f, origin=10.0)
    >>> root = next(r for r in stream if isinstance(r, Root))
    >>> stream.initial, round(root.refine(), 12), -root.old
    (1, 12.0, -1)
    """

    __slots__ = ("_items", "initial")

    def __init__(
        self,
        f: ExpSum,
        *,
        origin: float = 0.0,
        exact: Callable[[float], float] | None = None,
        pieces: Callable[[], tuple[tuple[float, int], ...]] | None = None,
        v0: float | None = None,
    ) -> None:
        self._items: Iterator[Root | float] = iter(())
        if not f.terms:
            self.initial = 0
            return
        value = _shifted(f.scaled(), origin) if exact is None else exact
        if v0 is None:
            v0 = value(origin)
        if f.is_constant:
            self.initial = sign(v0) or f.limit_sign
            return
        self.initial = sign(v0)
        if not self.initial:  # a root at the origin: the sign the function moves to
            known = pieces() if pieces is not None else monotone_pieces(f)
            self.initial, pieces = known[0][1], _known(known)
        self._items = _changes(f, origin, value, v0=v0, current=self.initial, pieces=pieces)

    def __iter__(self) -> Iterator[Root | float]:
        return self._items


def _shifted(g: ExpSum, origin: float) -> Callable[[float], float]:
    """``x -> g(x - origin)``."""

    def at(x: float) -> float:
        return g(x - origin)

    return at


def _known(pieces: tuple[tuple[float, int], ...]) -> Callable[[], tuple[tuple[float, int], ...]]:
    def get() -> tuple[tuple[float, int], ...]:
        return pieces

    return get


def _changes(
    f: ExpSum,
    origin: float,
    value: Callable[[float], float],
    *,
    v0: float,
    current: int,
    pieces: Callable[[], tuple[tuple[float, int], ...]] | None,
) -> Iterator[Root | float]:
    """The items of a :class:`SignStream` (the search is described in the module)."""
    x_lo, v_lo = origin, v0
    for start, _direction in (monotone_pieces(f) if pieces is None else pieces())[1:]:
        x_end = origin + start
        if x_end <= x_lo:
            continue
        v_end = value(x_end)
        if sign(v_end) == -current:  # the monotone piece ending here crosses zero once
            yield Root(x_lo, v_lo, x_end, v_end, value, old=current)
            current = -current
        else:
            yield x_end
        x_lo, v_lo = x_end, v_end
    if current != f.limit_sign:
        yield from _tail_change(f, origin, x_lo=x_lo, v_lo=v_lo, value=value, old=current)


def _tail_change(
    f: ExpSum,
    origin: float,
    *,
    x_lo: float,
    v_lo: float,
    value: Callable[[float], float],
    old: int,
) -> Iterator[Root | float]:
    """The sign change on the last, unbounded monotone piece (nothing if out of range)."""
    guess = _closed_form_root(f)
    if guess is not None:
        spread = guess * 1e-10 + 1e-12 / f.rate_scale()
        lo, hi = origin + (guess - spread), origin + (guess + spread)
        if lo > x_lo:
            v_guess_lo, v_guess_hi = value(lo), value(hi)
            if sign(v_guess_lo) == old and sign(v_guess_hi) != old:
                yield Root(lo, v_guess_lo, hi, v_guess_hi, value, old=old)
                return
    start = x_lo - origin
    step = 1.0 / f.rate_scale()
    for _ in range(_MAX_ITERATIONS):
        x_hi = origin + (start + step)
        if not math.isfinite(x_hi):
            return
        v_hi = value(x_hi)
        if sign(v_hi) != old:
            yield Root(x_lo, v_lo, x_hi, v_hi, value, old=old)
            return
        x_lo, v_lo = x_hi, v_hi
        yield x_lo
        step *= 2.0


def _closed_form_root(f: ExpSum) -> float | None:
    """Root of ``c + A * exp(-r * s)`` (one exponential and a constant), else None."""
    if len(f.terms) != 2 or f.terms[0][0] != 0.0:
        return None
    (_, c), (rate, a) = f.terms
    ratio = -a / c
    return math.log(ratio) / rate if ratio > 1.0 else None
