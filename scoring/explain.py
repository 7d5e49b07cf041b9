"""Why a score is what it is: contributions per event type, and the latest events.

A bounded companion of :class:`scoring.CustomerState`: per event type, the sum of
its points decayed to a reference time (exactly as the dimension values are), and
the last ``keep`` events by event time. Pure, like the rest of the core; its bytes
are :mod:`scoring.codec.explain`'s.

>>> from scoring.model import load_default_model
>>> model = load_default_model()
>>> from scoring.events import Event
>>> ev = Event("e1", "c1", "webinar_attended", 0, None)
>>> e = explain_add(None, ev, 10.0, model)
>>> round(contributions_at(e, model, 30 * 86_400_000)["webinar_attended"], 6)
5.0
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.decay import decay_factor
from scoring.events import Event
from scoring.model import Model

__all__ = ["Explanation", "contributions_at", "explain_add", "recent_at"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Per-type decayed points at ``at_ms`` and the latest events (newest first)."""

    at_ms: float
    by_type: tuple[tuple[str, float], ...]
    recent: tuple[tuple[int, str, float, str], ...]  # (ts_ms, type, points, event_id)
    # (not re-checked on construction: built by explain_add, or decoded with float())


def _half_life(model: Model, event_type: str) -> float:
    return model.half_life_ms(model.event_types[event_type].dimension)


def explain_add(
    expl: Explanation | None, event: Event, points: float, model: Model, *, keep: int = 10
) -> Explanation:
    """Add one applied event (``points`` as applied: 0 for a capped one)."""
    if keep < 0:
        raise ValueError("keep: must be >= 0")
    event_type, ts_ms = event.type, event.ts_ms
    if expl is None:
        expl = Explanation(float(ts_ms), (), ())
    at = max(expl.at_ms, float(ts_ms))
    if at == expl.at_ms:
        sums = dict(expl.by_type)
    else:
        sums = {t: v * decay_factor(at - expl.at_ms, _half_life(model, t)) for t, v in expl.by_type}
    late = decay_factor(at - ts_ms, _half_life(model, event_type)) if ts_ms < at else 1.0
    known = event_type in sums
    sums[event_type] = sums.get(event_type, 0.0) + points * late
    entry = (ts_ms, event_type, points, event.event_id)
    if not expl.recent or entry > expl.recent[0]:  # the newest (events mostly come in order)
        recent = (entry, *expl.recent)[:keep]
    else:
        recent = tuple(sorted((*expl.recent, entry), reverse=True)[:keep])
    by_type = tuple(sums.items()) if known else tuple(sorted(sums.items()))
    return Explanation(at, by_type, recent)


def contributions_at(expl: Explanation, model: Model, t_ms: float) -> dict[str, float]:
    """Each event type's contribution to the score at ``t_ms``."""
    return {
        t: v * decay_factor(t_ms - expl.at_ms, _half_life(model, t))
        for t, v in expl.by_type
        if t in model.event_types
    }


def recent_at(expl: Explanation, model: Model, t_ms: float) -> list[dict[str, object]]:
    """The kept events with what each still contributes at ``t_ms``, largest first."""
    rows = [
        {
            "event_id": eid,
            "type": etype,
            "timestamp_ms": ts,
            "points": pts,
            "contribution": pts * decay_factor(t_ms - ts, _half_life(model, etype)),
        }
        for ts, etype, pts, eid in expl.recent
        if etype in model.event_types
    ]
    rows.sort(key=lambda r: -abs(float(str(r["contribution"]))))
    return rows
