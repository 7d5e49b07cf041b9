"""NPS (issue §5): categories, the rounded score and incremental counts."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.nps import NpsCounts, category, nps


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0, "detractor"), (3, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"),
     (9, "promoter"), (10, "promoter")],
)  # fmt: skip
def test_categories(score: int, expected: str) -> None:
    assert category(score) == expected


@pytest.mark.parametrize("score", [-1, 11, 9.0, "9", True, None])
def test_bad_answers(score: object) -> None:
    with pytest.raises(ValueError, match="0-10"):
        category(score)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("p", "pa", "d", "expected"),
    [
        (0, 0, 0, None),
        (1, 0, 0, 100),
        (0, 0, 1, -100),
        (0, 3, 0, 0),
        (2, 1, 1, 25),
        (1, 7, 0, 13),  # 12.5 rounds half away from zero
        (0, 7, 1, -13),  # -12.5
        (1, 2, 0, 33),  # 33.33
        (2, 1, 0, 67),  # 66.67
        (0, 1, 2, -67),
        (1, 1, 1, 0),
        (3, 197, 0, 2),  # 1.5 -> 2
        (1, 398, 1, 0),
    ],
)
def test_nps_values(p: int, pa: int, d: int, expected: int | None) -> None:
    assert nps(p, pa, d) == expected
    assert NpsCounts(p, pa, d).score == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_nps_is_the_exact_rounded_ratio(p: int, pa: int, d: int) -> None:
    total = p + pa + d
    if total == 0:
        assert nps(p, pa, d) is None
        return
    exact = Fraction(100 * (p - d), total)
    result = nps(p, pa, d)
    assert result is not None and -100 <= result <= 100
    assert abs(result - exact) <= Fraction(1, 2)
    if abs(result - exact) == Fraction(1, 2):  # a tie: away from zero
        assert abs(result) > abs(exact)
    assert nps(d, pa, p) == (-result if result else 0)  # symmetric


@pytest.mark.parametrize("counts", [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (1.0, 0, 0)])
def test_counts_reject_negative_and_non_integer(counts: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        NpsCounts(*counts)
    with pytest.raises(ValueError, match="non-negative integers"):
        nps(*counts)


def test_counts_add_up() -> None:
    counts = NpsCounts()
    for answer in (10, 9, 7, 0, 3):
        counts = counts.add(category(answer))
    assert counts == NpsCounts(promoters=2, passives=1, detractors=2)
    assert counts.total == 5 and counts.score == 0
    assert counts + NpsCounts(promoters=5) == NpsCounts(7, 1, 2)
    assert counts.add("passive", 3).passives == 4
    with pytest.raises(ValueError, match="unknown NPS category"):
        counts.add("fan")
    with pytest.raises(TypeError):
        counts + 1  # type: ignore[operator]
    assert NpsCounts().score is None
