"""Merging two customers' states: one person known under two ids.

A customer's score is a sum of exponentials, one per event, so the state of the union
of two customers' events is the sum of their states at a common clock. ``merge`` takes
the survivor (``into``) and the customer merged away (``source``) and returns the
survivor's new state, exactly:

1. the common clock is the later of the two clocks; the survivor first fires its own
   pending decay crossings up to it (cause ``decay``), as :func:`scoring.apply` does
   before a later event;
2. each dimension's value is the sum of both values decayed to that clock;
3. cap counters add up per (type, day), at most the type's cap, and are pruned to the
   model's cap window; the remembered event ids are unioned (the newest of each side
   last, so that the next event keeps the newest of both); ``last_seen`` is per type
   the later of the two; the latest NPS answer by event time is kept (on a tie the
   lower score, as :func:`scoring.apply` does); ``events_applied`` add up;
4. the tier moves from the survivor's (with hysteresis, as after an event) and the
   segments are evaluated at the clock; every change has cause ``merge``, caused by the
   merge request, at the common clock, so a redelivered merge gives the same ids.

The customer merged away leaves under its own id (:func:`departure`): it exits its tier
(a tier change to no tier) and every segment it was in, with cause ``merge``, at its own
clock and with its own values, so that a request carried out again gives the same ids.

>>> from scoring.apply import apply
>>> from scoring.events import Event
>>> from scoring.model import load_default_model
>>> from scoring.state import values_at
>>> model, day = load_default_model(), 86_400_000
>>> a = apply(None, Event("e0", "a", "webinar_attended", 0), model).state
>>> a = apply(a, Event("e1", "a", "webinar_attended", 0), model).state
>>> b = apply(None, Event("e2", "b", "webinar_attended", day), model).state
>>> merged = merge(b, a, model, customer_id="b", request_id="r1")
>>> merged.state.clock_ms == day, merged.state.events_applied
(True, 3)
>>> total = values_at(a, model, day).score + values_at(b, model, day).score
>>> abs(values_at(merged.state, model, day).score - total) < 1e-12
True
>>> [(c.kind, c.to_tier, c.cause, c.cause_event_id) for c in merged.changes]
[('tier', 'warm', 'merge', 'r1')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scoring.changes import Change, diff
from scoring.crossing import advance
from scoring.decay import decay_factor
from scoring.explain import Explanation
from scoring.model import Model
from scoring.state import CustomerState, decayed_values, new_state, utc_day
from scoring.timeline import Point

__all__ = ["Merged", "departure", "merge", "merge_explanations"]


@dataclass(frozen=True, slots=True)
class Merged:
    """The survivor's state after a merge, and the changes the merge caused."""

    state: CustomerState
    changes: tuple[Change, ...]


def merge(
    into: CustomerState | None,
    source: CustomerState,
    model: Model,
    *,
    customer_id: str,
    request_id: str,
) -> Merged:
    """Merge ``source`` (the customer merged away) into ``into`` (the survivor,
    ``customer_id``; None: a customer never seen); see the module docstring."""
    current = new_state() if into is None else into
    if source.is_new:
        return Merged(current, ())
    clock = source.clock_ms if current.is_new else max(current.clock_ms, source.clock_ms)
    changes: list[Change] = []
    if not current.is_new and clock > current.clock_ms:
        current, decay_changes = advance(current, customer_id, clock, model)
        changes.extend(decay_changes)
    mine = decayed_values(current, model, clock)
    theirs = decayed_values(source, model, clock)
    values = [a + b for a, b in zip(mine, theirs, strict=True)]
    nps_score, nps_at = _latest_nps(current, source)
    last_seen = _later(current.last_seen, source.last_seen, len(model.tracked))
    score = math.fsum(values)
    p = model.plan
    tier = p.tiers.after_event(current.tier, score)  # (a survivor never seen: from the lowest)
    mask = p.segments_at(Point(clock, values, score, last_seen, nps_score))
    changes.extend(
        diff(
            model,
            customer_id,
            tier_before=current.tier,
            tier_after=tier,
            segments_before=current.segments,
            segments_after=mask,
            occurred_at_ms=clock,
            values=values,
            score=score,
            cause="merge",
            cause_event_id=request_id,
        )
    )
    lasts = [t for t in (current.last_event_ms, source.last_event_ms) if t is not None]
    state = CustomerState(
        clock_ms=clock,
        values=tuple(values),
        tier=tier,
        segments=mask,
        last_seen=last_seen,
        nps_score=nps_score,
        nps_at_ms=nps_at,
        caps=_caps(current.caps, source.caps, model, clock),
        recent_ids=_ids(current.recent_ids, source.recent_ids),
        events_applied=current.events_applied + source.events_applied,
        last_event_ms=max(lasts) if lasts else None,
    )
    return Merged(state, tuple(changes))


def departure(
    source: CustomerState, model: Model, *, customer_id: str, request_id: str
) -> tuple[Change, ...]:
    """The changes of ``source`` (``customer_id``) merged away: it exits its tier (``to``
    None, not entered) and then each segment it was in, in model order; cause ``merge``,
    caused by the merge request, at the state's clock with its values there (none for a
    customer never seen).

    >>> from scoring.apply import apply
    >>> from scoring.events import Event
    >>> from scoring.model import load_default_model
    >>> model = load_default_model()
    >>> a = apply(None, Event("e0", "a", "webinar_attended", 0), model).state
    >>> [(c.kind, c.name, c.from_tier, c.to_tier, c.entered, c.cause)
    ...  for c in departure(a, model, customer_id="a", request_id="r1")]
    [('tier', 'cold', 'cold', None, False, 'merge')]
    """
    if source.is_new:
        return ()
    values = tuple(source.values)
    score = math.fsum(values)
    dims = dict(zip(model.dimensions, values, strict=True))
    tier = model.tiers[source.tier].name
    segment: Literal["segment"] = "segment"
    names: list[tuple[Literal["tier", "segment"], str]] = [("tier", tier)]
    names += [(segment, r.name) for i, r in enumerate(model.segments) if source.segments >> i & 1]
    return tuple(
        Change.create(
            customer_id,
            kind,
            name,
            from_tier=tier if kind == "tier" else None,
            to_tier=None,
            entered=False,
            occurred_at_ms=source.clock_ms,
            score=score,
            dimensions=dims,
            cause="merge",
            cause_event_id=request_id,
            model=model.name,
            model_version=model.version,
        )
        for kind, name in names
    )


def _latest_nps(a: CustomerState, b: CustomerState) -> tuple[int | None, int | None]:
    """The latest NPS answer of the two by event time (on a tie the lower score)."""
    answers = [(s.nps_at_ms, s.nps_score) for s in (a, b) if s.nps_at_ms is not None]
    if not answers:
        return None, None
    at, score = max(answers, key=lambda x: (x[0], -(x[1] or 0)))
    return score, at


def _later(
    a: tuple[int | None, ...], b: tuple[int | None, ...], tracked: int
) -> tuple[int | None, ...]:
    """Per tracked type, the later of two last times (None: never; empty: all never)."""
    if not a or not b:
        return a or b
    return tuple(
        y if x is None else x if y is None else max(x, y) for x, y in zip(a, b, strict=True)
    )


def _caps(
    a: tuple[tuple[int, int, int], ...],
    b: tuple[tuple[int, int, int], ...],
    model: Model,
    clock: float,
) -> tuple[tuple[int, int, int], ...]:
    """Cap counters of both, added per (type index, day), at most the cap, kept for the
    clock's UTC day and the model's cap window before it."""
    oldest = utc_day(clock) - model.cap_window_days
    counts: dict[tuple[int, int], int] = {}
    for kind, day, n in (*a, *b):
        if day >= oldest:
            counts[(kind, day)] = counts.get((kind, day), 0) + n
    names = model.event_type_names
    out = []
    for (kind, day), n in sorted(counts.items()):
        cap = model.event_types[names[kind]].max_per_day
        out.append((kind, day, n if cap is None else min(n, cap)))
    return tuple(out)


def _ids(a: tuple[bytes, ...], b: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Both id memories, oldest first, alternating from the newest end so that trimming
    the front keeps the newest of each; an id in both is kept once."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    for k in range(max(len(a), len(b))):
        for side in (b, a):  # the survivor's newest id ends up last
            if k < len(side):
                fp = side[len(side) - 1 - k]
                if fp not in seen:
                    seen.add(fp)
                    out.append(fp)
    return tuple(reversed(out))


def merge_explanations(
    into: Explanation | None, source: Explanation | None, model: Model, *, keep: int
) -> Explanation | None:
    """Both explanations at the later reference time: per event type the sum of both
    contributions decayed to it, and the latest ``keep`` events of both."""
    if into is None or source is None:
        return into or source
    at = max(into.at_ms, source.at_ms)
    sums: dict[str, float] = {}
    for expl in (into, source):
        for event_type, value in expl.by_type:
            if event_type not in model.event_types:
                continue
            half_life = model.half_life_ms(model.event_types[event_type].dimension)
            decayed = (
                value * decay_factor(at - expl.at_ms, half_life) if at != expl.at_ms else value
            )
            sums[event_type] = sums.get(event_type, 0.0) + decayed
    recent = tuple(sorted(set(into.recent) | set(source.recent), reverse=True)[:keep])
    return Explanation(at, tuple(sorted(sums.items())), recent)
