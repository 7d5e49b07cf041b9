"""Offline oracles of the scoring-core tests: metrics and segments from first principles.

Nothing here goes through :mod:`scoring.metrics`, :mod:`scoring.plan` or the crossing
search: the tests compare those with these.
"""

from __future__ import annotations

import math

from scoring.model import DAY_MS, Model
from scoring.rules import holds
from scoring.state import CustomerState


def reference_metric(state: CustomerState, model: Model, metric: str, t: float) -> object:
    """The metric at ``t`` (``t >= clock``), computed from first principles."""
    kind, _, arg = metric.partition(".")
    if kind == "nps":
        return state.nps_category
    if kind == "days_since":
        last = state.last_seen_of(model, arg)
        return math.inf if last is None else (t - last) / DAY_MS
    values = [
        v * 2 ** (-(t - state.clock_ms) / h)
        for v, h in zip(state.dimension_values(model), model.half_lives_ms, strict=True)
    ]
    return math.fsum(values) if kind == "score" else values[model.dimension_index(arg)]


def reference_segments(state: CustomerState, model: Model) -> int:
    """The segment mask of ``state`` at its clock: each rule's conditions compared with
    :func:`reference_metric` and combined with Python's ``all`` / ``any``."""
    mask = 0
    for i, rule in enumerate(model.segments):
        at = state.clock_ms
        truths = [
            holds(c.op, reference_metric(state, model, c.metric, at), c.value)  # type: ignore[arg-type]
            for c in rule.conditions
        ]
        if (all if rule.mode == "all" else any)(truths):
            mask |= 1 << i
    return mask
