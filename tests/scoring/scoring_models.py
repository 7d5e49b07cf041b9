"""Test models of the scoring-core tests (imported by conftest and property tests)."""

from __future__ import annotations

import copy
from typing import Any

from scoring.model import Model, parse_model

#: 2023-11-14T00:00:00Z, the start of a UTC day.
T0 = 1_699_920_000_000
DAY = 86_400_000

#: A small model with three half-lives, negative points, a cap and every metric kind.
SMALL: dict[str, Any] = {
    "model": {"name": "small", "version": 3, "half_life_days": 10},
    "dimensions": {"a": {"half_life_days": 1}, "b": {"half_life_days": 3}, "c": {}},
    "tiers": {"cold": 0, "warm": 10, "hot": 30, "hysteresis": 0.2},
    "events": {
        "pa": {"points": 5, "dimension": "a"},
        "na": {"points": -5, "dimension": "a"},
        "pb": {"points": 4, "dimension": "b"},
        "nb": {"points": -4, "dimension": "b"},
        "pc": {"points": 3, "dimension": "c"},
        "nc": {"points": -3, "dimension": "c"},
        "big": {"points": 40, "dimension": "c"},
        "capped": {"points": 1, "dimension": "c", "max_per_day": 2},
        "nps_response": {"points": 1, "dimension": "c"},
    },
    "segments": {
        "a_high": {"all": [{"metric": "dimension.a", "op": ">=", "value": 4}]},
        "score_band": {
            "all": [
                {"metric": "score", "op": ">", "value": 2},
                {"metric": "score", "op": "<=", "value": 12},
            ]
        },
        "quiet_pa": {"all": [{"metric": "days_since.pa", "op": ">=", "value": 2}]},
        "promoter_or_b": {
            "any": [
                {"metric": "nps.category", "op": "==", "value": "promoter"},
                {"metric": "dimension.b", "op": "<", "value": -1},
            ]
        },
        "active": {"all": [{"metric": "days_since.any", "op": "<", "value": 1.5}]},
    },
}


def small_model(**overrides: Any) -> Model:
    """SMALL with top-level tables replaced by ``overrides``."""
    data = copy.deepcopy(SMALL)
    data.update(overrides)
    return parse_model(data, "small")
