"""Why a score is what it is: contributions per event type, and the latest events.

A bounded companion of :class:`scoring.CustomerState`: per event type, the sum of
its points decayed to a reference time (exactly as the dimension values are), and
the last ``keep`` events by event time. Pure, like the rest of the core.

>>> from scoring.model import load_default_model
>>> model = load_default_model()
>>> from scoring.events import Event
>>> ev = Event("e1", "c1", "webinar_attended", 0, None)
>>> e = explain_add(None, ev, 10.0, model)
>>> round(contributions_at(e, model, 30 * 86_400_000)["webinar_attended"], 6)
5.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson

from scoring.binexplain import BINARY_EXPLANATION, decode_binary, encode_binary
from scoring.decay import decay_factor
from scoring.errors import InvalidState
from scoring.events import Event
from scoring.model import Model

__all__ = ["EXPLANATION_FORMAT", "Explanation", "contributions_at", "decode_explanation",
           "encode_explanation", "explain_add", "recent_at"]  # fmt: skip


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


#: The format :func:`encode_explanation` writes (binary; formats 1 and 2, JSON, still
#: decode: format 1 is ``[at, by_type, recent]``, format 2 starts with ``[2,``).
EXPLANATION_FORMAT = BINARY_EXPLANATION
_JSON_FORMAT = 2  # written when format 3 cannot hold an explanation
_BINARY_LEAD = bytes([BINARY_EXPLANATION])
_EXACT_INT = float(2**53)  # integral floats below this print as JSON integers, exactly


def _compact(v: float) -> float | int:
    """``v`` as a JSON integer when that is exact and shorter (not -0.0)."""
    if v.is_integer() and abs(v) < _EXACT_INT and (v or math.copysign(1.0, v) > 0):
        return int(v)
    return v


def encode_explanation(expl: Explanation, model: Model) -> bytes:
    """Compact bytes; every number round-trips exactly.

    Format 3 (:mod:`scoring.binexplain`): packed binary, event types by their index in
    ``model.event_type_names``, event times relative to ``at``. One that format cannot
    hold is written as format 2, the same in JSON: ``[2, at, [[type, sum], ...], [[at -
    ts, type, points, event_id], ...]]``, or format 1 for a time that is not an integral
    number of ms. Types the model no longer has are left out (nothing shows them).

    >>> from scoring.model import load_default_model
    >>> model = load_default_model()
    >>> e = Explanation(1e12, (("email_open", 2.5),), ((999_999_000_000, "email_open", 3.0, "e1"),))
    >>> raw = encode_explanation(e, model)
    >>> raw[0], len(raw), decode_explanation(raw, model) == e
    (3, 33, True)
    """
    index = model.plan.type_index
    raw = encode_binary(expl.at_ms, expl.by_type, expl.recent, index)
    if raw is not None:
        return raw
    by_type = [(index[t], v) for t, v in expl.by_type if t in index]
    recent = [(ts, index[t], p, e) for ts, t, p, e in expl.recent if t in index]
    at = expl.at_ms
    if not (at.is_integer() and abs(at) < _EXACT_INT):  # (explain_add makes integral times)
        return _encode_v1(expl)
    base = int(at)
    return orjson.dumps(
        [
            _JSON_FORMAT,
            base,
            [[i, _compact(v)] for i, v in by_type],
            [[base - ts, i, _compact(p), e] for ts, i, p, e in recent],
        ]
    )


def _encode_v1(expl: Explanation) -> bytes:
    return orjson.dumps(
        [expl.at_ms, [list(p) for p in expl.by_type], [list(r) for r in expl.recent]]
    )


def decode_explanation(raw: bytes, model: Model) -> Explanation:
    """Inverse of :func:`encode_explanation` (formats 1, 2 and 3); :class:`InvalidState` on
    bad bytes or a type index ``model`` does not have."""
    names = model.event_type_names
    if raw[:1] == _BINARY_LEAD:
        return Explanation(*decode_binary(raw, names))
    try:
        doc = orjson.loads(raw)
        if len(doc) == 3:  # format 1: type names, absolute times
            at, by_type, recent = doc
            return Explanation(
                float(at),
                tuple((str(t), float(v)) for t, v in by_type),
                tuple((int(ts), str(t), float(p), str(e)) for ts, t, p, e in recent),
            )
        fmt, at, by_type, recent = doc
        if fmt != _JSON_FORMAT:
            raise ValueError(f"format {fmt!r} is not 1, {_JSON_FORMAT} or {EXPLANATION_FORMAT}")
        base = int(at)
        return Explanation(
            float(base),
            tuple((names[_index(i)], float(v)) for i, v in by_type),
            tuple((base - int(dt), names[_index(i)], float(p), str(e)) for dt, i, p, e in recent),
        )
    except (orjson.JSONDecodeError, ValueError, TypeError, IndexError) as exc:
        raise InvalidState(f"explanation: {exc}") from None


def _index(i: object) -> int:
    if type(i) is not int or i < 0:
        raise ValueError(f"event type index {i!r} out of range")
    return i
