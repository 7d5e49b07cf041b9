"""Engagement tiers with hysteresis.

Tier ``k`` is entered upward when the score reaches ``threshold[k]`` and left
downward only when the score falls below ``threshold[k] * (1 - hysteresis)``: a score
that wanders inside that band never makes the tier flap.

>>> from scoring.model import load_default_model
>>> model = load_default_model()                  # cold 0, warm 20, hot 60, hysteresis 0.1
>>> after_event(0, 25.0, model), after_event(2, 55.0, model), after_event(2, 53.9, model)
(1, 2, 1)
>>> up_bound(1, model), down_bound(1, model), down_bound(0, model)
(60.0, 18.0, None)
"""

from __future__ import annotations

from scoring.model import Model

__all__ = ["after_event", "down_bound", "qualifying", "up_bound"]


def qualifying(score: float, model: Model) -> int:
    """The highest tier whose threshold is <= ``score`` (the lowest tier below 0).

    >>> from scoring.model import load_default_model
    >>> model = load_default_model()
    >>> qualifying(-5.0, model), qualifying(20.0, model), qualifying(59.9, model)
    (0, 1, 1)
    """
    best = 0
    for k, tier in enumerate(model.tiers):
        if tier.threshold <= score:
            best = k
    return best


def up_bound(tier: int, model: Model) -> float | None:
    """The score at which ``tier`` is left upward (None for the top tier)."""
    return model.tiers[tier + 1].threshold if tier + 1 < len(model.tiers) else None


def down_bound(tier: int, model: Model) -> float | None:
    """Below this score ``tier`` is left downward (None for the lowest tier)."""
    return model.tiers[tier].threshold * (1.0 - model.hysteresis) if tier > 0 else None


def after_event(tier: int, score: float, model: Model) -> int:
    """The tier after an event left the customer at ``score``, from ``tier``.

    Up to the highest tier reached, possibly several at once; down, when the score
    is below the current tier's down bound, to the tier the score qualifies for.
    """
    target = qualifying(score, model)
    if target > tier:
        return target
    bound = down_bound(tier, model)
    if bound is not None and score < bound:
        return target
    return tier
