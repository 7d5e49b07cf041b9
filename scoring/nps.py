"""Net Promoter Score: categories of a 0-10 answer and the score of a set of answers.

An answer of 9-10 is a promoter, 7-8 a passive, 0-6 a detractor. The NPS of a set of
answers is ``100 * (P - D) / (P + Pa + D)`` rounded to an integer, *half away from
zero* (12.5 -> 13, -12.5 -> -13), computed in exact integer arithmetic; it is None
for no answers. :class:`NpsCounts` is the incremental form the stream app keeps per
window and tier: counts add up, the score is derived.

>>> counts = NpsCounts().add("promoter").add("promoter").add("detractor").add("passive")
>>> counts
NpsCounts(promoters=2, passives=1, detractors=1)
>>> counts.total, counts.score
(4, 25)
>>> (counts + NpsCounts(detractors=4)).score     # 100 * (2 - 5) / 8 = -37.5
-38
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CATEGORIES", "Category", "NpsCounts", "category", "nps"]

Category = Literal["promoter", "passive", "detractor"]
CATEGORIES: tuple[Category, ...] = ("promoter", "passive", "detractor")


def category(score: int) -> Category:
    """The category of an answer.

    >>> [category(s) for s in (0, 6, 7, 8, 9, 10)]
    ['detractor', 'detractor', 'passive', 'passive', 'promoter', 'promoter']
    >>> category(11)
    Traceback (most recent call last):
    ...
    ValueError: an NPS answer is an integer 0-10, got 11
    """
    if type(score) is not int or not 0 <= score <= 10:
        raise ValueError(f"an NPS answer is an integer 0-10, got {score!r}")
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def nps(promoters: int, passives: int, detractors: int) -> int | None:
    """``round(100 * (P - D) / (P + Pa + D))``, half away from zero; None without answers.

    >>> nps(2, 1, 1), nps(1, 0, 1), nps(0, 0, 0)
    (25, 0, None)
    >>> nps(1, 7, 0), nps(0, 7, 1)       # 12.5 and -12.5
    (13, -13)
    >>> nps(1, 2, 0)                     # 33.33...
    33
    """
    for count in (promoters, passives, detractors):
        if type(count) is not int or count < 0:
            raise ValueError(f"counts must be non-negative integers, got {count!r}")
    total = promoters + passives + detractors
    if total == 0:
        return None
    numerator = 100 * (promoters - detractors)
    magnitude = (2 * abs(numerator) + total) // (2 * total)  # floor(|x| + 1/2), exact
    return magnitude if numerator >= 0 else -magnitude


@dataclass(frozen=True, slots=True)
class NpsCounts:
    """Answers per category; immutable, adds up, never negative.

    >>> NpsCounts(promoters=-1)
    Traceback (most recent call last):
    ...
    ValueError: promoters must be a non-negative integer, got -1
    """

    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    def __post_init__(self) -> None:
        for name in ("promoters", "passives", "detractors"):
            count = getattr(self, name)
            if type(count) is not int or count < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {count!r}")

    def add(self, category: str, count: int = 1) -> NpsCounts:
        """These counts plus ``count`` answers of ``category``."""
        if category not in CATEGORIES:
            raise ValueError(f"unknown NPS category {category!r}")
        return NpsCounts(
            self.promoters + count * (category == "promoter"),
            self.passives + count * (category == "passive"),
            self.detractors + count * (category == "detractor"),
        )

    def __add__(self, other: NpsCounts) -> NpsCounts:
        if not isinstance(other, NpsCounts):
            return NotImplemented
        return NpsCounts(
            self.promoters + other.promoters,
            self.passives + other.passives,
            self.detractors + other.detractors,
        )

    @property
    def total(self) -> int:
        """Number of answers."""
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> int | None:
        """The NPS of these answers (None without answers)."""
        return nps(self.promoters, self.passives, self.detractors)
