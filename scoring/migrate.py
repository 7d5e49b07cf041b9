"""Changing the scoring model: compare two models, derive a state, and the switch's changes.

Pure functions over :class:`~scoring.model.Model` and :class:`~scoring.state.CustomerState`:

* :func:`compare` says what differs between the model in force and a new one, whether the
  new one may be built from current states (:func:`derive`) or needs a replay of the
  input, and refuses a changed model that keeps its name and version (its change ids
  would collide with the old model's);
* :func:`derive` rebuilds a state under a model that changes only tiers, hysteresis or
  segment rules: the values, times, caps and ids carry over; the tier moves by the new
  model's rule from where it was, and the segments are evaluated at the clock;
* :func:`switch_changes` lists the changes that take a customer from its standing under
  one model (tier and segments) to its standing under another, at the switch's instant,
  with cause ``model``: what a promotion (or a rollback) publishes.

>>> from scoring.model import load_default_model, parse_model_text
>>> old = load_default_model()
>>> text = old_text().replace("warm = 20", "warm = 10").replace("version = 1", "version = 2")
>>> new = parse_model_text(text, "new.toml")
>>> report = compare(old, new)
>>> report.differences, report.from_current
(('model.version: 1 -> 2', 'tiers: cold 0, warm 20, hot 60 -> cold 0, warm 10, hot 60'), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scoring.changes import Change
from scoring.errors import InvalidModel
from scoring.model import Model, default_model_path
from scoring.state import CustomerState, decayed_values
from scoring.timeline import Point

__all__ = [
    "Comparison",
    "Standing",
    "compare",
    "derive",
    "standing",
    "switch_changes",
]


def old_text() -> str:
    """The shipped model's text (for examples)."""
    return default_model_path().read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Comparison:
    """What differs between two models, and what a switch between them needs."""

    #: One line per difference, ``key: old -> new`` (empty: the same model).
    differences: tuple[str, ...]
    #: True when the new model's states can be derived from the current ones.
    from_current: bool
    #: Why they cannot (empty when they can).
    needs_replay: tuple[str, ...]
    #: Set when the new model cannot be used at all (same name and version, other content).
    refused: str | None

    @property
    def same(self) -> bool:
        return not self.differences


def _tiers(model: Model) -> str:
    return ", ".join(f"{t.name} {t.threshold:g}" for t in model.tiers)


def _rule(model: Model, name: str) -> str | None:
    for rule in model.segments:
        if rule.name == name:
            conds = "; ".join(f"{c.metric} {c.op} {c.value!r}" for c in rule.conditions)
            return f"{rule.mode}({conds})"
    return None


def compare(old: Model, new: Model) -> Comparison:
    """What changes from ``old`` to ``new``; see :class:`Comparison`."""
    diffs: list[str] = []
    replay: list[str] = []

    def note(key: str, a: object, b: object, *, needs_replay: bool = False) -> None:
        if a != b:
            diffs.append(f"{key}: {a} -> {b}")
            if needs_replay:
                replay.append(key)

    note("model.name", old.name, new.name)
    note("model.version", old.version, new.version)
    for dim in sorted(set(old.dimensions) | set(new.dimensions)):
        a = old.dimension_half_life_days.get(dim)
        b = new.dimension_half_life_days.get(dim)
        key = f"dimensions.{dim}.half_life_days"
        note(key, "absent" if a is None else f"{a:g}", "absent" if b is None else f"{b:g}",
             needs_replay=True)  # fmt: skip
    for name in sorted(set(old.event_types) | set(new.event_types)):
        a_type, b_type = old.event_types.get(name), new.event_types.get(name)
        if a_type is None or b_type is None:
            note(f"events.{name}", "absent" if a_type is None else "defined",
                 "absent" if b_type is None else "defined", needs_replay=True)  # fmt: skip
            continue
        for attr in ("points", "dimension", "max_per_day"):
            note(f"events.{name}.{attr}", getattr(a_type, attr), getattr(b_type, attr),
                 needs_replay=True)  # fmt: skip
    note("tiers", _tiers(old), _tiers(new))
    note("tiers.hysteresis", f"{old.hysteresis:g}", f"{new.hysteresis:g}")
    names = [r.name for r in old.segments] + [
        r.name for r in new.segments if r.name not in old.segment_names
    ]
    for name in names:
        note(f"segments.{name}", _rule(old, name) or "absent", _rule(new, name) or "absent")
    untracked = sorted(set(new.tracked) - set(old.tracked))
    if untracked:
        replay.append(f"days_since of {', '.join(untracked)} (not tracked by the old model)")
    refused = None
    if diffs and old.name == new.name and old.version == new.version:
        refused = (
            f"model {new.name!r} version {new.version} differs from the model in force with the "
            "same name and version: change ids would collide; raise [model] version"
        )
    return Comparison(tuple(diffs), not replay, tuple(replay), refused)


def derive(state: CustomerState, old: Model, new: Model) -> CustomerState:
    """``state`` (under ``old``) as a state of ``new``, without replaying its events.

    Only for a ``new`` that :func:`compare` allows ``from_current``. Values, clock, times,
    NPS answer, caps and remembered ids carry over; ``last_seen`` is re-indexed to the new
    model's tracked types; the tier moves by the new model's rule (thresholds and
    hysteresis) from the old tier's position; the segments are evaluated at the clock.
    """
    if not compare(old, new).from_current:
        raise InvalidModel(f"model {new.name!r} cannot be derived from current state")
    if state.is_new:
        return state
    last_seen: tuple[int | None, ...] = ()
    if state.last_seen:
        slots = {name: state.last_seen[i] for i, name in enumerate(old.tracked)}
        last_seen = tuple(slots[name] for name in new.tracked)
    values = state.dimension_values(old)
    score = math.fsum(values)
    p = new.plan
    tier = p.tiers.after_event(min(state.tier, len(new.tiers) - 1), score)
    mask = p.segments_at(Point(state.clock_ms, values, score, last_seen, state.nps_score))
    return CustomerState(
        clock_ms=state.clock_ms,
        values=state.values,
        tier=tier,
        segments=mask,
        last_seen=last_seen,
        nps_score=state.nps_score,
        nps_at_ms=state.nps_at_ms,
        caps=state.caps,
        recent_ids=state.recent_ids,
        events_applied=state.events_applied,
        last_event_ms=state.last_event_ms,
    )


@dataclass(frozen=True, slots=True)
class Standing:
    """What a customer's published changes say of it: its tier and its segments."""

    tier: int
    tier_name: str
    threshold: float
    segments: tuple[str, ...]  # in model order


def standing(state: CustomerState | None, model: Model) -> Standing:
    """The standing ``state`` records (None: a customer never seen, the lowest tier)."""
    tier = 0 if state is None else state.tier
    names = () if state is None else state.segment_names(model)
    return Standing(tier, model.tiers[tier].name, model.tiers[tier].threshold, names)


def switch_changes(
    customer_id: str,
    *,
    old_state: CustomerState | None,
    old_model: Model,
    new_state: CustomerState | None,
    new_model: Model,
    at_ms: float,
) -> tuple[Change, ...]:
    """The changes from the customer's standing under ``old_model`` to that under
    ``new_model``, occurring at ``at_ms`` with cause ``model``.

    The tier first (when its name differs; ``entered`` when the new tier is higher), then
    the new model's segments in its order, then exits of segments the new model no longer
    has. Values are the new model's at ``at_ms``. The ids depend only on the customer, the
    new model's name and version, the move and ``at_ms``: computing them again (a retried
    switch) gives the same ids with the same contents.
    """
    before, after = standing(old_state, old_model), standing(new_state, new_model)
    if new_state is None or new_state.is_new:
        values: Sequence[float] = (0.0,) * len(new_model.dimensions)
    else:
        values = decayed_values(new_state, new_model, at_ms)
    dims = dict(zip(new_model.dimensions, values, strict=True))
    score = math.fsum(values)

    def make(kind: str, name: str, frm: str | None, to: str | None, entered: bool) -> Change:
        return Change.create(
            customer_id,
            "tier" if kind == "tier" else "segment",
            name,
            from_tier=frm,
            to_tier=to,
            entered=entered,
            occurred_at_ms=at_ms,
            score=score,
            dimensions=dims,
            cause="model",
            cause_event_id=None,
            model=new_model.name,
            model_version=new_model.version,
        )

    out: list[Change] = []
    if before.tier_name != after.tier_name:
        up = (after.threshold, after.tier) > (before.threshold, before.tier)
        out.append(make("tier", after.tier_name, before.tier_name, after.tier_name, up))
    was, now = set(before.segments), set(after.segments)
    for name in new_model.segment_names:
        if (name in was) != (name in now):
            out.append(make("segment", name, None, None, name in now))
    gone = set(new_model.segment_names)
    out.extend(make("segment", n, None, None, False) for n in before.segments if n not in gone)
    return tuple(out)
