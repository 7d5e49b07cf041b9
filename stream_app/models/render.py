"""Text and JSON for the ``engagement-scorer model`` commands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stream_app.contracts import rfc3339

if TYPE_CHECKING:
    from stream_app.models.whatif import Side, WhatIf


def _time(ms: float | None) -> str | None:
    return None if ms is None else rfc3339(ms)


def _side_json(side: Side) -> dict[str, Any]:
    return {
        "tier": side.tier,
        "segments": list(side.segments),
        "score": side.score,
        "by_event_type": dict(side.by_event_type),
    }


def plan_json(r: WhatIf) -> dict[str, Any]:
    """The plan report as JSON-ready data."""
    c = r.comparison
    return {
        "in_force": r.old,
        "new": r.new,
        "mode": r.mode,
        "at": _time(r.now_ms),
        "differences": list(c.differences),
        "from_current_possible": c.from_current,
        "needs_replay": list(c.needs_replay),
        "refused": c.refused,
        "input": {
            "messages": r.messages,
            "events_valid_in_force": r.valid_old,
            "events_valid_new": r.valid_new,
            "earliest_event": _time(r.earliest_event_ms),
            "earliest_message": _time(r.earliest_message_ms),
        },
        "customers": r.customers,
        "stored_customers": r.stored,
        "customers_with_older_history": len(r.older_history),
        "customers_not_in_input": len(r.not_in_input),
        "older_history_examples": r.older_history[:5],
        "tiers": {
            "in_force": list(r.old_tiers),
            "new": list(r.new_tiers),
            "matrix": [[r.matrix[a, b] for b in r.new_tiers] for a in r.old_tiers],
        },
        "segments": {n: {"in_force": a, "new": b} for n, (a, b) in r.segments.items()},
        "promotion": {
            "changes": r.total_changes,
            "customers": r.customers_changed,
            "by_type": dict(sorted(r.changes.items())),
        },
        "examples": [
            {
                "customer_id": e.customer_id,
                "changes": list(e.changes),
                "in_force": _side_json(e.old),
                "new": _side_json(e.new),
            }
            for e in r.examples
        ],
    }


def _types(by_type: Mapping[str, float]) -> str:
    return ", ".join(f"{t} {v:.1f}" for t, v in by_type.items()) or "-"


def plan_text(r: WhatIf) -> str:
    """The plan report for a terminal."""
    c = r.comparison
    how = "derived from current state" if r.mode == "from-current" else "by replay of the input"
    out = [f"model plan: {r.old} (in force) -> {r.new}, {how}, at {_time(r.now_ms)}"]
    if c.refused:
        out.append(f"REFUSED: {c.refused}")
    out.append("changes to the model:" if c.differences else "changes to the model: none")
    out += [f"  {d}" for d in c.differences]
    if c.same:
        out.append("  (this is the model in force)")
    elif c.from_current:
        out.append("  (no replay needed: `model shadow NEW --from-current` builds it at once)")
    else:
        out.append(f"  (needs a replay of the input: {'; '.join(c.needs_replay)})")
    out.append(
        f"input: {r.messages:,} messages read; {r.valid_old:,} events valid under the model "
        f"in force, {r.valid_new:,} under the new one"
    )
    out.append(
        f"history: earliest retained event {_time(r.earliest_event_ms) or '-'}; "
        f"{r.stored:,} customers stored, {len(r.older_history):,} with events older than the "
        f"retained input, {len(r.not_in_input):,} with none of their events retained"
    )
    out.append("customers per tier (rows: in force, columns: new):")
    width = max([len(t) for t in (*r.old_tiers, *r.new_tiers)] + [6]) + 2
    out.append(" " * (width + 2) + "".join(f"{t:>{width}}" for t in r.new_tiers))
    for a in r.old_tiers:
        cells = "".join(f"{r.matrix[a, b]:>{width},}" for b in r.new_tiers)
        out.append(f"  {a:<{width}}{cells}")
    if r.segments:
        out.append("segment sizes (in force -> new):")
        name_w = max(len(n) for n in r.segments) + 2
        out += [f"  {n:<{name_w}}{a:>7,} -> {b:,}" for n, (a, b) in r.segments.items()]
    by_type = ", ".join(f"{t.rsplit('.', 2)[-2]}.{t.rsplit('.', 1)[-1]} {n:,}"
                        for t, n in sorted(r.changes.items()))  # fmt: skip
    out.append(
        f"a promotion would publish {r.total_changes:,} changes (cause model) for "
        f"{r.customers_changed:,} customers" + (f": {by_type}" if by_type else "")
    )
    if r.examples:
        out.append("examples:")
    for e in r.examples:
        out.append(f"  {e.customer_id}: {', '.join(e.changes) or 'no change'}")
        for label, side in (("in force", e.old), ("new", e.new)):
            segs = ", ".join(side.segments) or "-"
            out.append(
                f"    {label + ':':<10}{side.tier}, score {side.score:.2f}, segments {segs}; "
                f"by event type: {_types(side.by_event_type)}"
            )
    return "\n".join(out) + "\n"
