"""Segment rules: conditions, when one holds, and the one fold of a model's rule truth.

A rule holds when ``all`` or ``any`` of its conditions hold; a condition compares one
metric (:mod:`scoring.metrics`) with a value. However the truth of a condition is
known (a metric's value after an event, the sign of ``metric - value`` just after a
time, or a sure side until some time), :func:`fold` combines the conditions of every
rule into the segment mask in one way.

>>> holds(">=", 10.0, 10.0), TRUTH[">="], TRUTH["!="]
(True, (False, True, True), (True, False, True))
>>> fold([(True, [True, False]), (False, [False, True]), (True, [None, False])], lambda t: t)
2
>>> fold([(True, [None, True])], lambda t: t) is None      # not known
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeVar

__all__ = ["OPS", "TRUTH", "Condition", "SegmentRule", "Truth", "fold", "holds"]

OPS: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True, slots=True)
class Condition:
    """``metric op value``, e.g. ``dimension.web >= 10`` or ``nps.category == "promoter"``."""

    metric: str
    op: str
    value: float | str

    @property
    def kind(self) -> str:
        """``score``, ``dimension``, ``nps`` or ``days_since``."""
        return self.metric.partition(".")[0]

    @property
    def arg(self) -> str:
        """The part after the dot: a dimension, an event type, ``any`` or ``category``."""
        return self.metric.partition(".")[2]


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """A behavioural segment: ``all`` or ``any`` of its conditions hold."""

    name: str
    mode: Literal["all", "any"]
    conditions: tuple[Condition, ...]


def holds(op: str, left: float | str | None, right: float | str) -> bool:
    """``left op right``; a None left side (never answered) only satisfies ``!=``.

    >>> [holds(op, 1.0, 2.0) for op in ("<", "<=", ">", ">=", "==", "!=")]
    [True, True, False, False, False, True]
    >>> holds("==", None, "promoter"), holds("!=", None, "promoter")
    (False, True)
    """
    if left is None or isinstance(left, str) or isinstance(right, str):
        equal = left == right
        return equal if op == "==" else (not equal if op == "!=" else False)
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    return left == right if op == "==" else left != right


#: Whether a condition holds when ``metric - value`` has the sign -1, 0, 1.
Truth = tuple[bool, bool, bool]
#: :data:`Truth` per operator: ``metric op value`` is ``sign op 0``.
TRUTH: Mapping[str, Truth] = MappingProxyType(
    {op: (holds(op, -1.0, 0.0), holds(op, 0.0, 0.0), holds(op, 1.0, 0.0)) for op in OPS}
)

C = TypeVar("C")


def fold(
    rules: Iterable[tuple[bool, Iterable[C]]], truth: Callable[[C], bool | None]
) -> int | None:
    """The segment mask of ``rules``: per rule (``all`` mode?, its conditions), bit ``i``
    set when rule ``i`` holds, given each condition's ``truth``.

    Conditions are asked in order until one decides its rule (a false one for ``all``,
    a true one for ``any``). A truth of None is not known: the rest may still decide
    the rule, else the whole mask is not known and the result is None.
    """
    mask = 0
    for i, (every, conditions) in enumerate(rules):
        unsure = False
        for condition in conditions:
            known = truth(condition)
            if known is None:
                unsure = True
            elif known != every:  # decides the rule
                mask |= (not every) << i
                break
        else:
            if unsure:
                return None
            mask |= every << i
    return mask
