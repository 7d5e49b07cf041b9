"""Exponential decay and the sign changes of sums of exponentials.

A value ``v`` at time ``t0`` is worth ``v * decay_factor(t - t0, half_life)`` at ``t``.
A customer's score, a dimension minus a bound, or the derivative of either, is a sum
of exponentials ``f(s) = sum_j A_j * exp(-r_j * s)`` (a rate of 0 is a constant).
:func:`sign_steps` finds *every* point of ``s >= 0`` where the sign of ``f`` changes,
exactly (to adjacent floats), without sampling:

* the critical points of ``f`` are the sign changes of ``f'``; ``f' * exp(r_1 * s)``
  is again a sum of exponentials with a non-zero constant and one exponential term
  fewer, so they are found recursively (one rate: closed form);
* between consecutive critical points ``f`` is strictly monotone, so each piece holds
  at most one root and the ends of the piece bracket it;
* the last piece is unbounded: ``f`` tends to the sign of its slowest term, and the
  bracket is expanded geometrically until it holds the sign change;
* a bracket is shrunk by Illinois false position with a bisection safeguard until its
  ends are adjacent floats.

:class:`SignStream` is the same search, lazily: it yields each change as a
:class:`Root`, a bracket shrunk step by step and only as far as the caller needs,
so a caller that only wants the first change, or to compare one with another, pays
for no more; every root it does refine is the one :func:`sign_steps` finds. A sum
whose decaying terms share a sign is known to be monotone without the recursion.

Signs are *right-limit* signs: the sign of ``f`` just after a point, so a tangent
touch of zero is not a change, and a root at the origin takes the sign of the
function's direction there.

>>> f = ExpSum.of([(0.0, -0.2), (1.0, 1.8), (2.0, -3.0)])   # -0.2 + 1.8e^-s - 3e^-2s
>>> steps = sign_steps(f)
>>> steps.initial, [(round(s, 9), sign) for s, sign in steps.changes]
(-1, [(0.792409609, 1), (1.915640592, -1)])
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "LN2",
    "ExpSum",
    "Root",
    "SignSteps",
    "SignStream",
    "decay_factor",
    "first_change",
    "monotone_pieces",
    "sign",
    "sign_steps",
]

LN2 = math.log(2.0)
_MAX_EXPONENT = 1023.0
_MAX_ITERATIONS = 4000


def decay_factor(dt_ms: float, half_life_ms: float) -> float:
    """``2 ** (-dt / half_life)``: what one point is worth ``dt_ms`` after it was earned.

    >>> decay_factor(0, 1000.0), decay_factor(1000, 1000.0), decay_factor(3000, 1000.0)
    (1.0, 0.5, 0.125)
    >>> decay_factor(-1000, 1000.0)     # backwards in time a value grows
    2.0
    >>> decay_factor(1, 0)
    Traceback (most recent call last):
    ...
    ValueError: half_life_ms must be a positive finite number, got 0
    """
    if not (half_life_ms > 0 and math.isfinite(half_life_ms)):
        raise ValueError(f"half_life_ms must be a positive finite number, got {half_life_ms!r}")
    exponent = -dt_ms / half_life_ms
    return math.inf if exponent > _MAX_EXPONENT else 2.0**exponent


def sign(x: float) -> int:
    """-1, 0 or 1.

    >>> sign(-2.5), sign(0.0), sign(3)
    (-1, 0, 1)
    """
    return (x > 0) - (x < 0)


@dataclass(frozen=True, slots=True)
class ExpSum:
    """``f(s) = sum(coef * exp(-rate * s))`` over ``terms`` of ``(rate, coef)``.

    Rates are finite, >= 0, distinct and ascending; coefficients are finite and
    non-zero (an empty sum is the zero function). Build one with :meth:`of`, which
    merges equal rates and drops zero coefficients.

    >>> f = ExpSum.of([(1.0, 2.0), (0.0, -1.0), (1.0, 1.0), (3.0, 0.0)])
    >>> f.terms
    ((0.0, -1.0), (1.0, 3.0))
    >>> f(0.0), f.limit_sign
    (2.0, -1)
    >>> ExpSum(((1.0, 1.0), (0.5, 1.0)))
    Traceback (most recent call last):
    ...
    ValueError: rates must be distinct and ascending
    """

    terms: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        previous = -1.0
        for rate, coef in self.terms:
            if not (math.isfinite(rate) and rate >= 0 and math.isfinite(coef) and coef != 0):
                raise ValueError(f"bad term (rate={rate!r}, coef={coef!r})")
            if rate <= previous:
                raise ValueError("rates must be distinct and ascending")
            previous = rate

    @classmethod
    def trusted(cls, terms: tuple[tuple[float, float], ...]) -> ExpSum:
        """An ExpSum of ``terms`` known to be valid (not checked again)."""
        f = object.__new__(cls)
        object.__setattr__(f, "terms", terms)
        return f

    @classmethod
    def of(cls, terms: Iterable[tuple[float, float]]) -> ExpSum:
        """Merge terms of equal rate and drop zero coefficients."""
        merged: dict[float, float] = {}
        for rate, coef in terms:
            merged[rate] = merged.get(rate, 0.0) + coef
        return cls(tuple((r, c) for r, c in sorted(merged.items()) if c != 0.0))

    def __call__(self, s: float) -> float:
        return math.fsum(c * math.exp(-r * s) for r, c in self.terms)

    @property
    def is_constant(self) -> bool:
        """True for a function that does not change with ``s`` (including zero)."""
        return not self.terms or (len(self.terms) == 1 and self.terms[0][0] == 0.0)

    @property
    def limit_sign(self) -> int:
        """Sign of ``f(s)`` for large ``s``: the sign of its slowest term (0 if empty)."""
        return sign(self.terms[0][1]) if self.terms else 0

    def plus(self, constant: float) -> ExpSum:
        """``f + constant``."""
        return ExpSum.of((*self.terms, (0.0, constant)))

    def derivative(self) -> ExpSum:
        """``f'``."""
        return ExpSum(tuple((r, -r * c) for r, c in self.terms if r > 0))

    def scaled(self) -> ExpSum:
        """``f * exp(r_min * s)``: same sign everywhere, slowest term now constant."""
        if not self.terms:
            return self
        low = self.terms[0][0]
        return ExpSum(tuple((r - low, c) for r, c in self.terms))

    def rate_scale(self) -> float:
        """The fastest rate (1 for a constant): a natural unit of ``s`` for brackets."""
        return self.terms[-1][0] if self.terms and self.terms[-1][0] > 0 else 1.0


@dataclass(frozen=True, slots=True)
class SignSteps:
    """Right-limit sign of a function on ``[origin, inf)`` as a step function.

    ``initial`` is the sign just after ``origin``; ``changes`` lists ``(x, sign)`` in
    increasing ``x > origin``: from ``x`` on (just after it) the sign is ``sign``.
    A sign of 0 means the function is identically zero.

    >>> s = SignSteps(0.0, -1, ((2.0, 1), (5.0, -1)))
    >>> s.sign_at(0.0), s.sign_at(1.9), s.sign_at(2.0), s.sign_at(9.0), s.first
    (-1, -1, 1, -1, 2.0)
    """

    origin: float
    initial: int
    changes: tuple[tuple[float, int], ...] = ()

    def sign_at(self, x: float) -> int:
        """The sign just after ``x`` (``x >= origin``)."""
        current = self.initial
        for at, new in self.changes:
            if at > x:
                break
            current = new
        return current

    @property
    def first(self) -> float | None:
        """The first change, or None."""
        return self.changes[0][0] if self.changes else None


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
    slope = sign_steps(f.derivative().scaled())
    return ((0.0, slope.initial), *slope.changes)


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
    """A sign change bracketed in ``(a, b]``, shrunk step by step as :func:`first_change`.

    ``a`` has the sign ``old`` (or is where it starts), ``b`` another sign. Each
    :meth:`step` is one iteration of Illinois false position with a bisection
    whenever the bracket fails to halve, so the change lies in every ``(a, b]`` on the
    way and :meth:`refine` returns exactly what :func:`first_change` returns.
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


def first_change(
    lo: float,
    v_lo: float,
    hi: float,
    v_hi: float,
    value: Callable[[float], float],
    *,
    old: int,
) -> float:
    """Shrink ``[lo, hi]`` to adjacent floats; return the end where the sign is not ``old``.

    ``lo`` has the sign ``old`` (or is where it starts), ``hi`` another sign.
    Illinois false position, with a bisection whenever the bracket fails to halve.

    >>> root = first_change(0.0, -2.0, 2.0, 2.0, lambda x: x * x - 2.0, old=-1)
    >>> root, root * root - 2 >= 0, math.nextafter(root, 0) ** 2 - 2 < 0
    (1.4142135623730951, True, True)
    """
    return Root(lo, v_lo, hi, v_hi, value, old=old).refine()


class SignStream:
    """:func:`sign_steps`, lazily: the initial sign at once, each change on demand.

    Iterating yields, in increasing order, either a float ``x`` (no change up to
    ``x``: a point the search has passed) or a :class:`Root` bracketing the next
    change, after which the sign is ``-root.old``. A root need not be refined before
    the next item is asked for: the search goes on from the end of its bracket.
    ``sign_steps`` is this stream with every root refined, so both give the same
    points bit for bit. ``v0`` may pass ``exact(origin)`` when it is known.
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
        if exact is None:
            g = f.scaled()

            def exact(x: float) -> float:
                return g(x - origin)

        if v0 is None:
            v0 = exact(origin)
        if f.is_constant:
            self.initial = sign(v0) or f.limit_sign
            return
        self.initial = sign(v0)
        if not self.initial:  # a root at the origin: the sign the function moves to
            known = pieces() if pieces is not None else monotone_pieces(f)
            self.initial, pieces = known[0][1], lambda: known
        self._items = _changes(f, origin, exact, v0=v0, current=self.initial, pieces=pieces)

    def __iter__(self) -> Iterator[Root | float]:
        return self._items


def _changes(
    f: ExpSum,
    origin: float,
    value: Callable[[float], float],
    *,
    v0: float,
    current: int,
    pieces: Callable[[], tuple[tuple[float, int], ...]] | None,
) -> Iterator[Root | float]:
    """The items of a :class:`SignStream` (see :func:`sign_steps` for the search)."""
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


def sign_steps(
    f: ExpSum,
    *,
    origin: float = 0.0,
    exact: Callable[[float], float] | None = None,
    pieces: tuple[tuple[float, int], ...] | None = None,
) -> SignSteps:
    """Every right-limit sign change of ``f(x - origin)`` for ``x >= origin``.

    ``exact(x)``, if given, evaluates a function with the same roots as ``f`` at the
    absolute point ``x`` (for example the score exactly as the state computes it):
    brackets and the final adjacent-float bracket use it, so that the returned points
    agree bit for bit with later evaluations. ``pieces`` may pass precomputed
    :func:`monotone_pieces` of ``f`` (they do not change when a constant is added).

    >>> f = ExpSum.of([(0.0, -1.0), (LN2, 4.0)])      # 4 * 2^-s - 1: one root at s = 2
    >>> steps = sign_steps(f, origin=10.0)
    >>> steps.initial, round(steps.changes[0][0], 12), steps.changes[0][1]
    (1, 12.0, -1)
    >>> sign_steps(ExpSum.of([(1.0, 1.0)])).changes      # e^-s never reaches zero
    ()
    """
    if f.terms:
        f.scaled()  # (checked, as it always was)
    stream = SignStream(
        f, origin=origin, exact=exact, pieces=None if pieces is None else (lambda: pieces)
    )
    changes = tuple((item.refine(), -item.old) for item in stream if isinstance(item, Root))
    return SignSteps(origin, stream.initial, changes)


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
