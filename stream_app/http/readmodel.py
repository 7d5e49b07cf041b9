"""Read-side views of stored customer records (used by the CLI and the HTTP API)."""

from __future__ import annotations

from typing import Any

from scoring import Model, category, decode_state, next_crossing, segment_names, values_at
from stream_app.contracts import rfc3339
from stream_app.store.records import CustomerRecord


def describe(
    customer_id: str, record: CustomerRecord, model: Model, *, now_ms: float | None = None
) -> dict[str, Any]:
    """A customer's state as JSON-ready data: values at the clock (and at ``now_ms``)."""
    if record.state is None:
        raise KeyError(customer_id)
    state = decode_state(record.state, model)
    at_clock = values_at(state, model, state.clock_ms)
    out: dict[str, Any] = {
        "customer_id": customer_id,
        "score": at_clock.score,
        "dimensions": dict(at_clock.dimensions),
        "tier": model.tiers[state.tier].name,
        "segments": sorted(segment_names(state, model)),
        "nps_category": category(state.nps_score) if state.nps_score is not None else None,
        "nps_score": state.nps_score,
        "clock": rfc3339(state.clock_ms),
        "clock_ms": state.clock_ms,
        "events_applied": state.events_applied,
        "model": model.name,
        "model_version": model.version,
        "version": record.version,
    }
    crossing = next_crossing(state, model)
    out["next_crossing"] = rfc3339(crossing) if crossing is not None else None
    if now_ms is not None:
        now = values_at(state, model, max(now_ms, state.clock_ms))
        out["now"] = {"at": rfc3339(now_ms), "score": now.score, "dimensions": dict(now.dimensions)}
    return out
