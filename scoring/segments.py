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
from scoring.state import CustomerState

__all__ = ["evaluate", "holds", "holds_for_sign", "metric_value", "rule_holds"]


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

    def truth(condition: Condition) -> bool:
        return holds(condition.op, metric_value(condition, state, model, values), condition.value)

    mask = 0
    for i, rule in enumerate(model.segments):
        if rule_holds(rule, truth):
            mask |= 1 << i
    return mask
