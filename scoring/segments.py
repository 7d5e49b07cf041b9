"""Segment rules: conditions on a customer's metrics, combined with ``all`` / ``any``.

A condition compares one metric with a value: ``score``, ``dimension.<name>``,
``days_since.<event type>`` / ``days_since.any`` (fractional days since the last such
event; infinite if never) and ``nps.category`` (the latest answer's category; None if
never answered, so ``==`` is false and ``!=`` true).

Two ways to evaluate the same rule:

* :func:`holds` compares the metric's value *at* a time (after an event);
* :func:`holds_for_sign` decides from the *right-limit* sign of ``metric - value``
  (the sign just after a time, 0 meaning identically equal), which is how decay
  crossings are decided: a metric that only touches the bound does not cross it.

>>> holds(">=", 10.0, 10.0), holds_for_sign(">=", -1), holds_for_sign("!=", 0)
(True, False, False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from scoring.model import DAY_MS, Condition, Model, SegmentRule
from scoring.nps import category
from scoring.plan import Plan, plan
from scoring.state import CustomerState

__all__ = ["evaluate", "holds", "holds_for_sign", "metric_value", "rule_holds", "segment_mask"]


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


def holds_for_sign(op: str, sign: int) -> bool:
    """``metric op value`` given the sign of ``metric - value`` (0: identically equal).

    >>> [holds_for_sign(op, 1) for op in ("<", "<=", ">", ">=", "==", "!=")]
    [False, False, True, True, False, True]
    """
    if op == "<":
        return sign < 0
    if op == "<=":
        return sign <= 0
    if op == ">":
        return sign > 0
    if op == ">=":
        return sign >= 0
    return sign == 0 if op == "==" else sign != 0


def metric_value(
    condition: Condition, state: CustomerState, model: Model, values: Sequence[float]
) -> float | str | None:
    """The condition's metric for ``state`` at its clock, given the dimension ``values``."""
    kind = condition.kind
    if kind == "score":
        return math.fsum(values)
    if kind == "dimension":
        return values[model.dimension_index(condition.arg)]
    if kind == "nps":
        return state.nps_category
    last = state.last_seen_of(model, condition.arg)
    return math.inf if last is None else (state.clock_ms - last) / DAY_MS


def rule_holds(rule: SegmentRule, truth: Callable[[Condition], bool]) -> bool:
    """Combine the truth of the rule's conditions with its mode."""
    if rule.mode == "all":
        return all(truth(c) for c in rule.conditions)
    return any(truth(c) for c in rule.conditions)


def evaluate(state: CustomerState, model: Model) -> int:
    """Segment mask of ``state`` at its clock (bit ``i``: ``model.segments[i]`` holds)."""
    values = state.dimension_values(model)
    return segment_mask(
        plan(model),
        values,
        math.fsum(values),
        clock_ms=state.clock_ms,
        last_seen=state.last_seen,
        nps_score=state.nps_score,
    )


def segment_mask(
    p: Plan,
    values: Sequence[float],
    score: float,
    *,
    clock_ms: float,
    last_seen: Sequence[int | None],
    nps_score: int | None,
) -> int:
    """:func:`evaluate` from the parts of a state (``score`` is ``fsum(values)``)."""
    mask = 0
    for i, (every, checks) in enumerate(p.rules):
        for check in checks:
            kind = check.kind
            left: float | str | None
            if kind == "score":
                left = score
            elif kind == "dimension":
                left = values[check.slot]
            elif kind == "nps":
                left = None if nps_score is None else category(nps_score)
            else:
                last = last_seen[check.slot] if last_seen else None
                left = math.inf if last is None else (clock_ms - last) / DAY_MS
            if holds(check.op, left, check.value) != every:  # decides the rule
                mask |= (not every) << i
                break
        else:
            mask |= every << i
    return mask
