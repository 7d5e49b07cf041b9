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


def category(score: object) -> Category:
    """The category of an answer (anything but an ``int`` 0-10 is a ``ValueError``: the
    check is at run time, so the parameter is typed ``object``, which compiled code does
    not coerce).

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


def _count(value: object, what: str) -> int:
    """``value`` if it is a non-negative ``int`` (not a bool), else ``ValueError(what...)``."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{what}, got {value!r}")
    return value


def nps(promoters: object, passives: object, detractors: object) -> int | None:
    """``round(100 * (P - D) / (P + Pa + D))``, half away from zero; None without answers.

    The counts are checked at run time (non-negative ``int``), hence typed ``object``.

    >>> nps(2, 1, 1), nps(1, 0, 1), nps(0, 0, 0)
    (25, 0, None)
    >>> nps(1, 7, 0), nps(0, 7, 1)       # 12.5 and -12.5
    (13, -13)
    >>> nps(1, 2, 0)                     # 33.33...
    33
    """
    p = _count(promoters, "counts must be non-negative integers")
    pa = _count(passives, "counts must be non-negative integers")
    d = _count(detractors, "counts must be non-negative integers")
    total = p + pa + d
    if total == 0:
        return None
    numerator = 100 * (p - d)
    magnitude = (2 * abs(numerator) + total) // (2 * total)  # floor(|x| + 1/2), exact
    return magnitude if numerator >= 0 else -magnitude


@dataclass(frozen=True, slots=True, init=False)
class NpsCounts:
    """Answers per category; immutable, adds up, never negative.

    >>> NpsCounts(promoters=-1)
    Traceback (most recent call last):
    ...
    ValueError: promoters must be a non-negative integer, got -1
    """

    promoters: int
    passives: int
    detractors: int

    def __init__(self, promoters: object = 0, passives: object = 0, detractors: object = 0) -> None:
        # (checked here, not in __post_init__: compiled, the generated __init__ would refuse
        # a float with a TypeError before any check of ours)
        for name, value in (
            ("promoters", promoters),
            ("passives", passives),
            ("detractors", detractors),
        ):
            count = _count(value, f"{name} must be a non-negative integer")
            object.__setattr__(self, name, count)  # frozen: the dataclass way to set

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
