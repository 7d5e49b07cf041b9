"""Lookup tables derived once from a model, for the hot paths.

A :class:`Plan` only indexes what the :class:`~scoring.model.Model` already says
(dimension slots of event types, the tier bounds, segment conditions with their
metric parsed), so that applying an event or looking for a crossing does no string
parsing or list searching. :func:`plan` builds it on first use and keeps it on the
model.

>>> from scoring.model import load_default_model
>>> p = plan(load_default_model())
>>> p.dimension_of["web_visit"], p.up, p.down
(5, (20.0, 60.0, None), (None, 18.0, 54.0))
>>> p.rules[0]
(True, (Check(metric='days_since.loyalty_earn', kind='days_since', slot=1, op='>=', value=30.0), \
Check(metric='dimension.web', kind='dimension', slot=5, op='>=', value=10.0)))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from scoring.decay import LN2
from scoring.model import ANY, Condition, Model

__all__ = ["Check", "Plan", "plan"]

_COST = {"nps": 0, "days_since": 1, "dimension": 2, "score": 3}
#: ``holds_for_sign(op, sign)`` for the signs -1, 0, 1 (see :mod:`scoring.segments`).
_TRUTH = {
    "<": (True, False, False),
    "<=": (True, True, False),
    ">": (False, False, True),
    ">=": (False, True, True),
    "==": (False, True, False),
    "!=": (True, False, True),
}


@dataclass(frozen=True, slots=True)
class Check:
    """A segment condition, compiled: ``slot`` is the dimension or tracked-type index."""

    metric: str
    kind: str
    slot: int
    op: str
    value: float | str
    #: Whether ``metric op value`` holds when ``metric - value`` has the sign -1, 0, 1.
    truth: tuple[bool, bool, bool] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Plan:
    """The tables; tuples follow the model's order of tiers and segments."""

    #: Every half-life is a positive finite number of ms (decay needs no checks).
    finite_half_lives: bool
    #: Event type -> index of its dimension.
    dimension_of: Mapping[str, int]
    #: Event type -> index in ``model.event_type_names`` (cap counters).
    type_index: Mapping[str, int]
    #: Event type -> the ``model.tracked`` slots its events update (itself and ``any``).
    seen_slots: Mapping[str, tuple[int, ...]]
    #: Per tier, the score it is left upward at (None for the top tier).
    up: tuple[float | None, ...]
    #: Per tier, the score below which it is left downward (None for the lowest).
    down: tuple[float | None, ...]
    #: Per segment rule: (``all`` mode?, its conditions, cheapest to watch first:
    #: ``nps``, ``days_since``, ``dimension``, ``score``).
    rules: tuple[tuple[bool, tuple[Check, ...]], ...]
    #: The decay rates ``LN2 / half-life`` ascending, each with its dimensions in order.
    rates: tuple[tuple[float, tuple[int, ...]], ...]


def plan(model: Model) -> Plan:
    """The plan of ``model``, built once."""
    cached = model._plan
    if cached is None:
        cached = _build(model)
        object.__setattr__(model, "_plan", cached)
    return cached


def _build(model: Model) -> Plan:
    tiers, hysteresis = model.tiers, model.hysteresis
    tracked = {name: i for i, name in enumerate(model.tracked)}
    names = {name: i for i, name in enumerate(model.event_type_names)}
    rates: dict[float, list[int]] = {}
    for i, half_life in enumerate(model.half_lives_ms):
        rates.setdefault(LN2 / half_life, []).append(i)
    return Plan(
        finite_half_lives=all(0 < h < math.inf for h in model.half_lives_ms),
        dimension_of=MappingProxyType(
            {t: model.dimension_index(et.dimension) for t, et in model.event_types.items()}
        ),
        type_index=MappingProxyType({t: names[t] for t in model.event_types}),
        seen_slots=MappingProxyType(
            {t: tuple(i for n, i in tracked.items() if n in (ANY, t)) for t in model.event_types}
        ),
        up=tuple(tiers[k + 1].threshold if k + 1 < len(tiers) else None for k in range(len(tiers))),
        down=tuple(
            tiers[k].threshold * (1.0 - hysteresis) if k > 0 else None for k in range(len(tiers))
        ),
        rules=tuple(
            (rule.mode == "all", _checks(model, rule.conditions, tracked))
            for rule in model.segments
        ),
        rates=tuple((rate, tuple(group)) for rate, group in sorted(rates.items())),
    )


def _checks(
    model: Model, conditions: tuple[Condition, ...], tracked: dict[str, int]
) -> tuple[Check, ...]:
    """A rule's conditions compiled, cheapest to watch first."""
    checks = []
    for c in conditions:
        kind, _, arg = c.metric.partition(".")
        if kind == "dimension":
            slot = model.dimension_index(arg)
        elif kind == "days_since":
            slot = tracked[arg]
        else:
            slot = -1
        checks.append(Check(c.metric, kind, slot, c.op, c.value, _TRUTH[c.op]))
    return tuple(sorted(checks, key=lambda check: _COST[check.kind]))
