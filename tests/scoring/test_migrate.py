"""Changing models: comparison, derived states and the changes of a switch (pure)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from scoring import apply, values_at
from scoring.errors import InvalidModel
from scoring.events import Event
from scoring.migrate import compare, derive, standing, switch_changes
from scoring.model import Model, parse_model
from tests.scoring.scoring_models import DAY, SMALL, T0


def variant(**edits: Any) -> Model:
    """The small model with dotted keys replaced (``None`` deletes), version 4."""
    data = copy.deepcopy(SMALL)
    data["model"]["version"] = 4
    for dotted, value in edits.items():
        *path, last = dotted.split("__")
        node = data
        for part in path:
            node = node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return parse_model(data, "variant")


def fold(model: Model, events: list[Event]) -> Any:
    state = None
    for e in events:
        state = apply(state, e, model).state
    return state


def test_same_name_and_version_with_other_content_is_refused(model: Model) -> None:
    data = copy.deepcopy(SMALL)
    data["tiers"]["warm"] = 9
    same_version = parse_model(data, "x")
    report = compare(model, same_version)
    assert report.refused is not None and "raise [model] version" in report.refused
    assert compare(model, model).same and compare(model, model).refused is None


def test_thresholds_hysteresis_and_rules_can_be_derived_points_cannot(model: Model) -> None:
    assert compare(model, variant(tiers__warm=8, tiers__hysteresis=0.1)).from_current
    assert compare(model, variant(segments__a_high=None)).from_current
    points = compare(model, variant(events__pa__points=6))
    assert not points.from_current and points.needs_replay == ("events.pa.points",)
    half = compare(model, variant(dimensions__a__half_life_days=2))
    assert half.needs_replay == ("dimensions.a.half_life_days",)
    new_rule = {"all": [{"metric": "days_since.pb", "op": ">=", "value": 1}]}
    tracked = compare(model, variant(segments__quiet_pb=new_rule))
    assert not tracked.from_current and "pb" in tracked.needs_replay[0]
    with pytest.raises(InvalidModel):
        derive(fold(model, []) or apply(None, Event("e", "c", "pa", T0), model).state,
               model, variant(events__pa__points=6))  # fmt: skip


def test_a_derived_state_moves_its_tier_by_the_new_rule(
    model: Model, event: Callable[..., Event]
) -> None:
    state = fold(model, [event("pc", T0), event("pc", T0 + 1), event("pc", T0 + 2)])  # 9 points
    assert state.tier_name(model) == "cold"
    lower = variant(tiers__warm=8)
    derived = derive(state, model, lower)
    assert derived.tier_name(lower) == "warm"
    assert derived.values == state.values and derived.recent_ids == state.recent_ids
    # inside the hysteresis band of the tier it had: it stays
    hot = fold(model, [event("big", T0)])  # 40 points: hot
    assert derive(hot, model, variant(tiers__hot=42)).tier_name(model) == "hot"
    assert derive(hot, model, variant(tiers__hot=60)).tier_name(model) == "warm"


def test_derived_segments_are_evaluated_at_the_clock(
    model: Model, event: Callable[..., Event]
) -> None:
    state = fold(model, [event("pa", T0)])  # a = 5
    assert "a_high" in state.segment_names(model)
    rule = {"all": [{"metric": "dimension.a", "op": ">=", "value": 6}]}
    stricter = variant(segments__a_high=rule)
    assert "a_high" not in derive(state, model, stricter).segment_names(stricter)


def test_switch_changes_move_tier_and_segments_with_stable_ids(
    model: Model, event: Callable[..., Event]
) -> None:
    events = [event("pc", T0), event("pc", T0 + 1), event("pc", T0 + 2), event("pa", T0 + 3)]
    old = fold(model, events)
    renamed_data = copy.deepcopy(SMALL)
    renamed_data["model"]["version"] = 4
    renamed_data["tiers"]["warm"] = 8
    renamed_data["segments"]["a_very_high"] = renamed_data["segments"].pop("a_high")
    new_model = parse_model(renamed_data, "renamed")
    new = derive(old, model, new_model)
    at = T0 + DAY
    changes = switch_changes(
        "c1", old_state=old, old_model=model, new_state=new, new_model=new_model, at_ms=at
    )
    moves = [(c.kind, c.name, c.from_tier, c.to_tier, c.entered) for c in changes]
    assert standing(old, model).tier_name == "warm"  # 14 points at the clock
    assert ("segment", "a_very_high", None, None, True) in moves
    assert ("segment", "a_high", None, None, False) in moves  # renamed: left, then entered
    assert all(c.cause == "model" and c.occurred_at_ms == at for c in changes)
    assert all(c.model == "small" and c.model_version == 4 for c in changes)
    assert changes[0].score == values_at(new, new_model, at).score
    again = switch_changes(
        "c1", old_state=old, old_model=model, new_state=new, new_model=new_model, at_ms=at
    )
    assert [c.change_id for c in again] == [c.change_id for c in changes]
    assert again == changes


def test_a_customer_unknown_to_one_model_starts_from_the_lowest_tier(
    model: Model, event: Callable[..., Event]
) -> None:
    hot = fold(model, [event("big", T0)])
    out = switch_changes(
        "c1", old_state=None, old_model=model, new_state=hot, new_model=model, at_ms=T0
    )
    first = out[0]
    assert (first.kind, first.from_tier, first.to_tier, first.entered) == (
        "tier",
        "cold",
        "hot",
        True,
    )
    back = switch_changes(
        "c1", old_state=hot, old_model=model, new_state=None, new_model=model, at_ms=T0
    )
    assert back[0].to_tier == "cold" and not back[0].entered and back[0].score == 0.0
    assert (
        switch_changes(
            "c1", old_state=None, old_model=model, new_state=None, new_model=model, at_ms=T0
        )
        == ()
    )
