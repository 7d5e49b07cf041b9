"""Decay maths: decay factors and the exact sign changes of sums of exponentials."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scoring.decay import LN2, ExpSum, decay, decay_factor, sign
from scoring.roots import Root, SignStream, monotone_pieces

RATES = [0.0, 0.05, 0.1, 0.3, 0.5, 1.0, 1.7, 2.0, 5.0]


@dataclass(frozen=True)
class SignSteps:
    """Every sign change of a :class:`SignStream`, its roots refined: ``initial`` holds
    just after ``origin``, and from each ``x`` of ``changes`` on its ``sign``."""

    origin: float
    initial: int
    changes: tuple[tuple[float, int], ...] = ()

    def sign_at(self, x: float) -> int:
        current = self.initial
        for at, new in self.changes:
            if at > x:
                break
            current = new
        return current


def sign_steps(
    f: ExpSum, *, origin: float = 0.0, exact: Callable[[float], float] | None = None
) -> SignSteps:
    stream = SignStream(f, origin=origin, exact=exact)
    changes = tuple((item.refine(), -item.old) for item in stream if isinstance(item, Root))
    return SignSteps(origin, stream.initial, changes)


def first_change(
    lo: float, v_lo: float, hi: float, v_hi: float, value: Callable[[float], float], *, old: int
) -> float:
    return Root(lo, v_lo, hi, v_hi, value, old=old).refine()


def scale(f: ExpSum, s: float) -> float:
    """The size of the terms at ``s``: the floor of meaningful |f(s)|."""
    return math.fsum(abs(c) * math.exp(-r * s) for r, c in f.terms)


def test_decay_factor_is_exact_on_half_lives() -> None:
    h = 14 * 86_400_000.0
    assert [decay_factor(k * h, h) for k in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert decay_factor(-h, h) == 2.0
    assert decay_factor(-1e30, h) == math.inf  # no OverflowError
    assert decay_factor(1e30, h) == 0.0
    assert [decay(k * h, h) for k in range(-1, 4)] == [2.0, 1.0, 0.5, 0.25, 0.125]


@pytest.mark.parametrize("half_life", [0.0, -1.0, math.inf, math.nan])
def test_decay_factor_checks_the_half_life(half_life: float) -> None:
    with pytest.raises(ValueError, match="half_life_ms"):
        decay_factor(1.0, half_life)


@pytest.mark.parametrize(
    "terms",
    [
        ((-1.0, 1.0),),
        ((1.0, 0.0),),
        ((1.0, math.nan),),
        ((math.inf, 1.0),),
        ((1.0, 1.0), (1.0, 2.0)),
    ],
)
def test_expsum_checks_its_terms(terms: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError, match=r"bad term|distinct"):
        ExpSum(terms)


def test_expsum_algebra() -> None:
    f = ExpSum.of([(1.0, 2.0), (0.0, -1.0), (1.0, 1.0), (2.0, 5.0), (2.0, -5.0)])
    assert f.terms == ((0.0, -1.0), (1.0, 3.0))
    assert f.plus(1.0).terms == ((1.0, 3.0),)
    assert f.derivative().terms == ((1.0, -3.0),)
    assert ExpSum.of([(1.0, 2.0), (3.0, 1.0)]).scaled().terms == ((0.0, 2.0), (2.0, 1.0))
    assert f(0.0) == 2.0 and f.limit_sign == -1 and not f.is_constant
    assert ExpSum(()).is_constant and ExpSum(((0.0, 4.0),)).is_constant


def test_constant_and_zero_functions() -> None:
    assert sign_steps(ExpSum(())) == SignSteps(0.0, 0)
    assert sign_steps(ExpSum(((0.0, -2.0),)), origin=5.0) == SignSteps(5.0, -1)
    assert monotone_pieces(ExpSum(((0.0, 1.0),))) == ((0.0, 0),)


def test_closed_form_single_rate() -> None:
    f = ExpSum.of([(0.0, -1.0), (LN2, 8.0)])  # 8 * 2^-s - 1: zero at s = 3
    steps = sign_steps(f, origin=1_700_000_000_000.0)
    ((at, new),) = steps.changes
    assert steps.initial == 1 and new == -1
    assert at == pytest.approx(1_700_000_000_003.0, abs=1e-3)
    # the adjacent-float bracket: the new sign at `at`, the old one just before
    assert f(at - 1_700_000_000_000.0) <= 0 < f(math.nextafter(at, 0) - 1_700_000_000_000.0)


def test_a_root_at_the_origin_takes_the_direction() -> None:
    rising = ExpSum.of([(0.0, 1.0), (1.0, -1.0)])  # 1 - e^-s: 0 at s = 0, then positive
    assert sign_steps(rising) == SignSteps(0.0, 1)
    falling = ExpSum.of([(0.0, -1.0), (1.0, 1.0)])
    assert sign_steps(falling) == SignSteps(0.0, -1)


def test_a_tangent_touch_is_not_a_change() -> None:
    # g(u) = -(u - 1/2)^2 with u = e^-s: 2u - 4u^2... = -1/4 + u - u^2 touches 0 at u = 1/2
    f = ExpSum.of([(0.0, -0.25), (1.0, 1.0), (2.0, -1.0)])
    steps = sign_steps(f)
    assert steps.initial == -1
    assert all(new == -1 for _, new in steps.changes) or steps.changes == ()
    assert steps.sign_at(10.0) == -1


def hump(a: float, b: float, height_fraction: float) -> ExpSum:
    """e^-as - e^-bs minus a constant just under its maximum: a short positive excursion."""
    peak_at = math.log(b / a) / (b - a)
    peak = math.exp(-a * peak_at) - math.exp(-b * peak_at)
    return ExpSum.of([(0.0, -peak * height_fraction), (a, 1.0), (b, -1.0)])


@pytest.mark.parametrize("gap", [1e-2, 1e-4, 1e-6, 1e-8])
def test_short_excursions_are_found(gap: float) -> None:
    f = hump(0.5, 0.6, 1 - gap)
    steps = sign_steps(f)
    assert steps.initial == -1
    (up, s_up), (down, s_down) = steps.changes
    assert (s_up, s_down) == (1, -1)
    assert 0 < up < down
    for at in (up, down):
        assert abs(f(at)) <= 1e-9 * scale(f, at)
    # the excursion is far shorter than any sensible sampling step when the gap is small
    if gap <= 1e-6:
        assert down - up < 0.1


def test_first_change_brackets_to_adjacent_floats() -> None:
    root = first_change(0.0, -2.0, 2.0, 2.0, lambda x: x * x - 2.0, old=-1)
    assert root == math.sqrt(2.0) or math.nextafter(root, 0.0) ** 2 < 2.0 <= root**2
    # a step function: bisection alone must still converge
    step = first_change(0.0, -1.0, 1e12, 1.0, lambda x: -1.0 if x < 12345.678 else 1.0, old=-1)
    assert step == 12345.678


terms_strategy = st.lists(
    st.tuples(st.sampled_from(RATES), st.floats(-10, 10).filter(lambda c: abs(c) > 1e-3)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(terms_strategy)
def test_sign_steps_never_miss_a_sampled_change_and_are_exact(
    terms: list[tuple[float, float]],
) -> None:
    f = ExpSum.of(terms)
    assume(f.terms)
    steps = sign_steps(f)
    # exact: each change is a zero of f to (near) float precision
    for at, new in steps.changes:
        assert abs(f(at)) <= 1e-9 * scale(f, at) + 1e-300
        assert new in (-1, 1)
    # consistent: the steps alternate
    signs = [steps.initial, *(new for _, new in steps.changes)]
    assert all(x != y for x, y in itertools.pairwise(signs))
    # dense sampling on [0, 30]: every clear sign (beyond 1e-9 of the scale) agrees
    for i in range(3001):
        s = i * 0.01
        value = f(s)
        if abs(value) > 1e-9 * scale(f, s):
            assert steps.sign_at(s) == sign(value), (s, value)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(LN2 / (365 * 86_400_000), LN2 / 3_600_000),  # half-lives of an hour to a year
    st.floats(1.01, 4.0),
    st.floats(1e-12, 0.5),
    st.floats(0, 2e12),
)
def test_humps_are_never_missed(a: float, ratio: float, gap: float, origin: float) -> None:
    """Realistic scales: times in epoch ms, rates per ms; excursions of a relative
    height down to 1e-12 are found (their width is still many float steps of time)."""
    f = hump(a, a * ratio, 1 - gap)
    exact_origin = origin

    def exact(x: float) -> float:
        return f(x - exact_origin)

    steps = sign_steps(f, origin=origin, exact=exact)
    ups = [at for at, new in steps.changes if new == 1]
    assert ups, steps  # the excursion above zero is always found
    assert all(at >= origin for at, _ in steps.changes)


@settings(max_examples=100, deadline=None)
@given(terms_strategy)
def test_monotone_pieces_alternate(terms: list[tuple[float, float]]) -> None:
    f = ExpSum.of(terms)
    assume(not f.is_constant)
    pieces = monotone_pieces(f)
    assert pieces[0][0] == 0.0
    assert all(p[1] in (-1, 1) for p in pieces)
    assert all(x[1] != y[1] and x[0] < y[0] for x, y in itertools.pairwise(pieces))
    assert len(pieces) <= len(f.terms)  # at most one critical point per extra term
