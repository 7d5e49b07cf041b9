"""Applying an event to a customer's state: the entry point of the scoring core.

``apply(state, event, model)`` is pure and deterministic. In order:

1. a duplicate ``event_id`` (one of the last ``dedup_memory`` applied) changes nothing;
2. an event later than the clock first applies every pending decay crossing up to its
   time (:func:`~scoring.crossing.advance`), then the values decay to the event time,
   which becomes the clock; an earlier (late) event leaves the clock where it is;
3. the event's points, decayed to the clock for a late event, are added to its
   dimension, unless its type's daily cap is used up (status ``capped``);
4. the tier and segments are evaluated at the clock, and every change is reported.

>>> from scoring.events import Event
>>> from scoring.model import load_default_model
>>> from scoring.state import values_at
>>> model = load_default_model()
>>> day = 86_400_000
>>> r1 = apply(None, Event("e1", "c-1", "webinar_attended", 0), model)
>>> r2 = apply(r1.state, Event("e2", "c-1", "webinar_attended", day), model)
>>> r2.status, round(values_at(r2.state, model, day).score, 3), r2.state.tier_name(model)
('applied', 19.772, 'cold')
>>> r3 = apply(r2.state, Event("e3", "c-1", "review_submitted", day), model)
>>> [(c.kind, c.from_tier, c.to_tier, c.cause) for c in r3.changes]
[('tier', 'cold', 'warm', 'event')]
>>> apply(r3.state, Event("e3", "c-1", "review_submitted", day), model).status
'duplicate'
>>> t = next_crossing(r3.state, model)         # 14 quiet days: the "lapsing" segment
>>> state, changes = advance(r3.state, "c-1", t, model)
>>> (t - day) / day, [(c.name, c.entered, c.cause) for c in changes]
(14.0, [('lapsing', True, 'decay')])
>>> t = next_crossing(state, model)           # warm is left below 20 * (1 - 0.1)
>>> state, changes = advance(state, "c-1", t, model)
>>> round((t - day) / day, 3), [(c.from_tier, c.to_tier, round(c.score, 9)) for c in changes]
(15.534, [('warm', 'cold', 18.0)])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

from scoring.changes import Change, diff
from scoring.crossing import advance, next_crossing
from scoring.decay import decay_factor
from scoring.errors import InvalidEvent
from scoring.events import Event
from scoring.model import EventType, Model
from scoring.nps import category
from scoring.state import (
    CustomerState,
    decayed_values,
    fingerprint,
    new_state,
    utc_day,
)
from scoring.timeline import Point

__all__ = ["Applied", "NpsResponse", "advance", "apply", "next_crossing"]

_EPOCH_DAY = date(1970, 1, 1)


@lru_cache(maxsize=64)
def _day_text(day: int) -> str:
    """``YYYY-MM-DD`` of a UTC day number."""
    return (_EPOCH_DAY + timedelta(days=day)).isoformat()


@dataclass(frozen=True, slots=True)
class NpsResponse:
    """One NPS answer, as aggregated by day of event time and tier when answering."""

    day: str
    category: str
    tier: str
    score: int


@dataclass(frozen=True, slots=True)
class Applied:
    """The result of :func:`apply`."""

    state: CustomerState
    changes: tuple[Change, ...]
    status: Literal["applied", "duplicate", "capped"]
    nps: NpsResponse | None


def apply(
    state: CustomerState | None,
    event: Event,
    model: Model,
    *,
    dedup_memory: int = 16,
    quiet_before_ms: float | None = None,
) -> Applied:
    """Apply ``event`` to ``state`` (None: a customer never seen) under ``model``.

    ``quiet_before_ms``, if given, must be a time before which ``state`` surely has no
    crossing (its :func:`next_crossing`, or a time :func:`~scoring.crossing.quiet_until`
    proved; ``math.inf``: never). An event before it then skips the search for crossings
    due before the event, with the same result.
    """
    if dedup_memory < 0:
        raise ValueError("dedup_memory must be >= 0")
    current = new_state() if state is None else state
    print_ = fingerprint(event.event_id)
    if print_ in current.recent_ids:
        return Applied(current, (), "duplicate", None)
    event_type = model.event_types.get(event.type)
    if event_type is None:
        raise InvalidEvent("unknown_type", f"type: {event.type!r} is not in model {model.name!r}")

    t = event.ts_ms
    changes: list[Change] = []
    if current.is_new:
        clock, values = float(t), list(current.dimension_values(model))
    elif t > current.clock_ms:
        if quiet_before_ms is None or t >= quiet_before_ms:
            current, decay_changes = advance(current, event.customer_id, t, model)
            changes.extend(decay_changes)
        clock, values = float(t), list(decayed_values(current, model, t))
    else:  # a late event: the clock stays
        clock, values = current.clock_ms, list(current.dimension_values(model))

    p = model.plan
    counted, caps = _count(
        current.caps, clock, event_type, p.type_index[event.type], t, window=model.cap_window_days
    )
    if counted and event_type.points:
        i = p.dimension_of[event.type]
        late = decay_factor(clock - t, model.half_lives_ms[i]) if t < clock else 1.0
        values[i] += event_type.points * late

    response = None
    nps_score, nps_at = current.nps_score, current.nps_at_ms
    if event.nps_score is not None:
        response = NpsResponse(
            day=_day_text(utc_day(t)),
            category=category(event.nps_score),
            tier=model.tiers[current.tier].name,
            score=event.nps_score,
        )
        # the latest answer by event time; on a tie the lower score, whatever the order
        if nps_at is None or t > nps_at or (t == nps_at and event.nps_score < (nps_score or 0)):
            nps_score, nps_at = event.nps_score, t

    last_seen = _seen(current.last_seen, p.seen_slots[event.type], len(model.tracked), t)
    score = math.fsum(values)
    tier = p.tiers.after_event(current.tier, score)
    mask = p.segments_at(Point(clock, values, score, last_seen, nps_score))
    if tier != current.tier or mask != current.segments:
        changes.extend(
            diff(
                model,
                event.customer_id,
                tier_before=current.tier,
                tier_after=tier,
                segments_before=current.segments,
                segments_after=mask,
                occurred_at_ms=clock,
                values=values,
                score=score,
                cause="event",
                cause_event_id=event.event_id,
            )
        )
    final = CustomerState(
        clock_ms=clock,
        values=tuple(values),
        tier=tier,
        segments=mask,
        last_seen=last_seen,
        nps_score=nps_score,
        nps_at_ms=nps_at,
        caps=caps,
        recent_ids=(*current.recent_ids, print_)[-dedup_memory:] if dedup_memory else (),
        events_applied=current.events_applied + 1,
        last_event_ms=t if current.last_event_ms is None else max(current.last_event_ms, t),
    )
    return Applied(final, tuple(changes), "applied" if counted else "capped", response)


def _count(
    caps: tuple[tuple[int, int, int], ...],
    clock: float,
    event_type: EventType,
    index: int,
    t: int,
    *,
    window: int,
) -> tuple[bool, tuple[tuple[int, int, int], ...]]:
    """Whether the event counts under its daily cap, and the pruned cap counters.

    Counters are kept for the clock's UTC day and the ``window`` days before it (the
    model's ``cap_window_days``); a capped type's event on an older day cannot be
    counted and adds nothing. ``index`` is the event type's index in
    ``model.event_type_names``.
    """
    oldest = utc_day(clock) - window
    kept = [c for c in caps if c[1] >= oldest]
    cap = event_type.max_per_day
    if cap is None:
        return True, tuple(kept)
    day = utc_day(t)
    if day < oldest:
        return False, tuple(kept)
    for j, (kind, d, count) in enumerate(kept):
        if kind == index and d == day:
            if count >= cap:
                return False, tuple(kept)
            kept[j] = (kind, d, count + 1)
            return True, tuple(kept)
    return True, tuple(sorted((*kept, (index, day, 1))))


def _seen(
    last_seen: tuple[int | None, ...], slots: tuple[int, ...], tracked: int, t: int
) -> tuple[int | None, ...]:
    """``last_seen`` after an event at ``t`` updating ``slots`` (latest by event time)."""
    if not slots:
        return last_seen or (None,) * tracked
    seen = list(last_seen or (None,) * tracked)
    for j in slots:
        previous = seen[j]
        seen[j] = t if previous is None else max(previous, t)
    return tuple(seen)
