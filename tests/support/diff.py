"""What differs between two customer states (empty when they agree).

Values are compared with a relative tolerance of 1e-9 (the same history folded twice may
round differently in the last bits), everything else exactly, unless said otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from scoring import CustomerState, Model, values_at

from .fold import settle

REL_TOL = 1e-9
#: Kept exactly equal by any two passes over one history in one order.
SAME_ORDER_FIELDS = (
    "tier", "segments", "events_applied", "nps_score", "nps_at_ms", "last_event_ms",
    "last_seen", "caps", "recent_ids",
)  # fmt: skip
#: Kept equal whatever the order the events of one history were met in.
ANY_ORDER_FIELDS = ("segments", "events_applied", "nps_score", "nps_at_ms", "last_event_ms")


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)


def state_diff(
    actual: CustomerState,
    expected: CustomerState,
    model: Model,
    *,
    horizon_ms: float | None = None,
    any_order: bool = False,
    customer_id: str = "",
) -> list[str]:
    """What differs between two states of one event history.

    Without ``horizon_ms`` the states are compared as they are: clock and stored values
    included. With it, both are first settled to the horizon (the worker's decay sweep fires
    crossings on its own schedule, ``scoring.advance`` is pure), then compared on the score
    and dimension values *at* the horizon, and on the clock to the millisecond (a crossing's
    time is found by a root search).

    ``any_order``: the history may have been met in another order (across source
    partitions the order is not defined, and the sweep fires crossings at a partition's
    event-time progress, so an older event queued behind newer ones arrives late). What
    depends on the path the score took is then left out: the clock, last-seen times, caps,
    remembered event ids, and the tier while the score lies in a hysteresis band."""
    diffs: list[str] = []
    if horizon_ms is None:
        if not any_order and actual.clock_ms != expected.clock_ms:
            diffs.append(f"clock_ms {actual.clock_ms!r} != {expected.clock_ms!r}")
        av, ev = actual.values, expected.values
        if len(av) != len(ev) or not all(close(a, e) for a, e in zip(av, ev, strict=True)):
            diffs.append(f"values {av!r} != {ev!r}")
    else:
        actual = settle(actual, customer_id, model, horizon_ms)
        expected = settle(expected, customer_id, model, horizon_ms)
        va, ve = values_at(actual, model, horizon_ms), values_at(expected, model, horizon_ms)
        pairs = [("score", va.score, ve.score)]
        pairs += [(d, va.dimensions[d], ve.dimensions[d]) for d in model.dimensions]
        diffs += [f"{name} {x!r} != {y!r}" for name, x, y in pairs if not close(x, y)]
        if not any_order and abs(actual.clock_ms - expected.clock_ms) > 1.0:
            diffs.append(f"clock {actual.clock_ms!r} != {expected.clock_ms!r}")
    if any_order and actual.tier != expected.tier:
        at = expected.clock_ms if horizon_ms is None else horizon_ms
        if not in_hysteresis_band(expected, model, at):
            diffs.append(f"tier {actual.tier_name(model)} != {expected.tier_name(model)}")
    for name in ANY_ORDER_FIELDS if any_order else SAME_ORDER_FIELDS:
        a, e = getattr(actual, name), getattr(expected, name)
        if a != e:
            diffs.append(f"{name} {a!r} != {e!r}")
    return diffs


def state_diffs(
    actual: Mapping[str, CustomerState | None],
    expected: Mapping[str, CustomerState | None],
    model: Model,
    *,
    horizon_ms: float | None = None,
    any_order: bool = False,
) -> dict[str, list[str]]:
    """:func:`state_diff` per customer of either side (a customer stored on one side only
    differs too)."""
    out: dict[str, list[str]] = {}
    for cid in sorted(set(actual) | set(expected)):
        a, e = actual.get(cid), expected.get(cid)
        if a is None or e is None:
            if (a is None) != (e is None):
                out[cid] = [f"stored {a is not None}, expected {e is not None}"]
            continue
        diffs = state_diff(a, e, model, horizon_ms=horizon_ms, any_order=any_order, customer_id=cid)
        if diffs:
            out[cid] = diffs
    return out


def in_hysteresis_band(state: CustomerState, model: Model, at_ms: float) -> bool:
    """True when the score at ``at_ms`` lies where the tier depends on the path the score
    took (at or above a tier's down bound, below its threshold)."""
    score = values_at(state, model, at_ms).score
    return any(t.threshold * (1 - model.hysteresis) <= score < t.threshold for t in model.tiers[1:])
