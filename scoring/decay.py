"""Exponential decay: the one formula, and sums of exponentials.

A value ``v`` at time ``t0`` is worth ``v * decay(t - t0, half_life)`` at ``t``:
:func:`decay` is *the* formula, used wherever a value is carried to another time
(states, crossings, explanations), so that all of them agree to the last bit;
:func:`decay_factor` is the same, with the half-life checked.

A customer's score, a dimension minus a bound, or the derivative of either, is a sum
of exponentials ``f(s) = sum_j A_j * exp(-r_j * s)`` (a rate of 0 is a constant): an
:class:`ExpSum`, whose sign changes :mod:`scoring.roots` finds exactly.

>>> decay(14.0, 14.0), decay_factor(28.0, 14.0)
(0.5, 0.25)
>>> f = ExpSum.of([(0.0, -0.2), (1.0, 1.8), (2.0, -3.0)])   # -0.2 + 1.8e^-s - 3e^-2s
>>> f.terms, f.limit_sign
(((0.0, -0.2), (1.0, 1.8), (2.0, -3.0)), -1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["LN2", "ExpSum", "decay", "decay_factor", "sign"]

LN2 = math.log(2.0)
#: ``2 ** x`` overflows above this: the factor is then infinite.
_MAX_EXPONENT = 1023.0


def decay(dt_ms: float, half_life_ms: float) -> float:
    """``2 ** (-dt / half_life)``, for a half-life known to be a positive finite number.

    The one decay formula of the core. Backwards in time (``dt < 0``) a value grows,
    to infinity rather than an ``OverflowError``.

    >>> decay(0, 1000.0), decay(1000, 1000.0), decay(-1000, 1000.0), decay(-1e30, 1.0)
    (1.0, 0.5, 2.0, inf)
    """
    exponent = -dt_ms / half_life_ms
    return math.inf if exponent > _MAX_EXPONENT else 2.0**exponent


def decay_factor(dt_ms: float, half_life_ms: float) -> float:
    """:func:`decay` with the half-life checked: what one point is worth ``dt_ms`` after
    it was earned.

    >>> decay_factor(0, 1000.0), decay_factor(1000, 1000.0), decay_factor(3000, 1000.0)
    (1.0, 0.5, 0.125)
    >>> decay_factor(-1000, 1000.0)     # backwards in time a value grows
    2.0
    >>> decay_factor(1, 0)
    Traceback (most recent call last):
    ...
    ValueError: half_life_ms must be a positive finite number, got 0.0
    """
    if not (half_life_ms > 0 and math.isfinite(half_life_ms)):
        # float(): a compiled build has made an int argument a float already; say the same
        got = float(half_life_ms)
        raise ValueError(f"half_life_ms must be a positive finite number, got {got!r}")
    return decay(dt_ms, half_life_ms)


def sign(x: float) -> int:
    """-1, 0 or 1.

    >>> sign(-2.5), sign(0.0), sign(3)
    (-1, 0, 1)
    """
    return (x > 0) - (x < 0)


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

    __slots__ = ("terms",)

    def __init__(self, terms: tuple[tuple[float, float], ...], check: bool = True) -> None:
        """``check=False`` for terms known to be valid (:meth:`trusted`)."""
        if check:
            previous = -1.0
            for rate, coef in terms:
                if not (math.isfinite(rate) and rate >= 0 and math.isfinite(coef) and coef != 0):
                    bad = f"rate={float(rate)!r}, coef={float(coef)!r}"  # (as decay_factor)
                    raise ValueError(f"bad term ({bad})")
                if rate <= previous:
                    raise ValueError("rates must be distinct and ascending")
                previous = rate
        self.terms = terms

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExpSum) and self.terms == other.terms

    def __hash__(self) -> int:
        return hash(self.terms)

    def __repr__(self) -> str:
        return f"ExpSum(terms={self.terms!r})"

    @classmethod
    def trusted(cls, terms: tuple[tuple[float, float], ...]) -> ExpSum:
        """An ExpSum of ``terms`` known to be valid (not checked again)."""
        return cls(terms, False)

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
