"""Lookup tables derived from a model when it is parsed, for the hot paths.

A :class:`Plan` only indexes what the :class:`~scoring.model.Model` already says
(dimension slots of event types, the tier bounds, segment conditions with their
metric's kind resolved), so that applying an event or looking for a crossing does no
string parsing or list searching. Every model holds its plan (``model.plan``).

>>> from scoring.model import load_default_model
>>> p = load_default_model().plan
>>> p.dimension_of["web_visit"], p.tiers.up, p.tiers.down
(5, (20.0, 60.0, None), (None, 18.0, 54.0))
>>> p.rules[0]
(True, (Check(name='days_since.loyalty_earn', metric=<metric days_since>, slot=1, op='>=', \
value=30.0), Check(name='dimension.web', metric=<metric dimension>, slot=5, op='>=', value=10.0)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from scoring.decay import LN2
from scoring.metrics import ANY, KINDS, Check
from scoring.rules import SegmentRule, fold
from scoring.tiers import Tier, TierBounds
from scoring.timeline import Point

__all__ = ["Plan", "build_plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The tables; tuples follow the model's order of tiers and segments."""

    #: Event type -> index of its dimension.
    dimension_of: Mapping[str, int]
    #: Event type -> index in ``model.event_type_names`` (cap counters).
    type_index: Mapping[str, int]
    #: Event type -> the ``model.tracked`` slots its events update (itself and ``any``).
    seen_slots: Mapping[str, tuple[int, ...]]
    #: The tiers' bounds.
    tiers: TierBounds
    #: Per segment rule: (``all`` mode?, its conditions, cheapest to watch first:
    #: ``nps``, ``days_since``, ``dimension``, ``score``).
    rules: tuple[tuple[bool, tuple[Check, ...]], ...]
    #: The decay rates ``LN2 / half-life`` ascending, each with its dimensions in order.
    rates: tuple[tuple[float, tuple[int, ...]], ...]

    def segments_at(self, at: Point) -> int:
        """The segment mask at ``at.clock`` (bit ``i``: ``model.segments[i]`` holds)."""
        mask = fold(self.rules, lambda check: check.metric.holds(at, check))
        assert mask is not None  # every truth at a point is known
        return mask


def build_plan(
    *,
    dimensions: Sequence[str],
    half_lives_ms: Sequence[float],
    event_dimensions: Mapping[str, str],
    event_type_names: Sequence[str],
    tracked: Sequence[str],
    tiers: Sequence[Tier],
    hysteresis: float,
    segments: Sequence[SegmentRule],
) -> Plan:
    """The plan of a model's parts (``event_dimensions``: event type -> its dimension;
    every condition's metric must be one of the model)."""
    slots = {name: i for i, name in enumerate(tracked)}
    names = {name: i for i, name in enumerate(event_type_names)}
    rates: dict[float, list[int]] = {}
    for i, half_life in enumerate(half_lives_ms):
        rates.setdefault(LN2 / half_life, []).append(i)
    rules = []
    for rule in segments:
        checks = []
        for c in rule.conditions:
            metric = KINDS[c.kind]
            slot = metric.slot(c.arg, dimensions, tracked)
            checks.append(Check.of(c.metric, metric, slot, c.op, c.value))
        checks.sort(key=lambda check: check.metric.cost)  # cheapest first (stable)
        rules.append((rule.mode == "all", tuple(checks)))
    return Plan(
        dimension_of=MappingProxyType(
            {t: dimensions.index(d) for t, d in event_dimensions.items()}
        ),
        type_index=MappingProxyType({t: names[t] for t in event_dimensions}),
        seen_slots=MappingProxyType(
            {t: tuple(i for n, i in slots.items() if n in (ANY, t)) for t in event_dimensions}
        ),
        tiers=TierBounds.of(tiers, hysteresis),
        rules=tuple(rules),
        rates=tuple((rate, tuple(group)) for rate, group in sorted(rates.items())),
    )
