"""Engagement tiers with hysteresis: every tier bound, in one place.

Tier ``k`` is entered upward when the score reaches ``threshold[k]`` and left
downward only when the score falls below ``threshold[k] * (1 - hysteresis)``: a score
that wanders inside that band never makes the tier flap.

>>> bounds = TierBounds.of((Tier("cold", 0.0), Tier("warm", 20.0), Tier("hot", 60.0)), 0.1)
>>> bounds.after_event(0, 25.0), bounds.after_event(2, 55.0), bounds.after_event(2, 53.9)
(1, 2, 1)
>>> bounds.up[1], bounds.down[1], bounds.down[0]
(60.0, 18.0, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Tier", "TierBounds"]


@dataclass(frozen=True, slots=True)
class Tier:
    """An engagement tier entered at ``threshold``."""

    name: str
    threshold: float


@dataclass(frozen=True, slots=True)
class TierBounds:
    """The bounds of each tier; tuples follow the tiers, lowest first."""

    thresholds: tuple[float, ...]
    #: Per tier, the score it is left upward at (None for the top tier).
    up: tuple[float | None, ...]
    #: Per tier, the score below which it is left downward (None for the lowest).
    down: tuple[float | None, ...]

    @classmethod
    def of(cls, tiers: Sequence[Tier], hysteresis: float) -> TierBounds:
        """The bounds of ``tiers`` (thresholds ascending, the first 0) with ``hysteresis``."""
        n = len(tiers)
        return cls(
            tuple(t.threshold for t in tiers),
            tuple(tiers[k + 1].threshold if k + 1 < n else None for k in range(n)),
            tuple(tiers[k].threshold * (1.0 - hysteresis) if k > 0 else None for k in range(n)),
        )

    def qualifying(self, score: float) -> int:
        """The highest tier whose threshold is <= ``score`` (the lowest tier below 0).

        >>> TierBounds.of((Tier("a", 0.0), Tier("b", 20.0)), 0.0).qualifying(-5.0)
        0
        """
        best = 0
        for k, threshold in enumerate(self.thresholds):
            if threshold <= score:
                best = k
        return best

    def after_event(self, tier: int, score: float) -> int:
        """The tier after an event left the customer at ``score``, from ``tier``.

        Up to the highest tier reached, possibly several at once; down, when the score
        is below the current tier's down bound, to the tier the score qualifies for.
        """
        target = self.qualifying(score)
        if target > tier:
            return target
        bound = self.down[tier]
        if bound is not None and score < bound:
            return target
        return tier

    @staticmethod
    def after_crossing(tier: int, up: int, down: int) -> int:
        """The tier just after a time, from ``tier``, given the right-limit signs of
        ``score - up bound`` and ``score - down bound`` there (-1 and 1 for a bound the
        tier does not have): one step at most, as a continuous score moves."""
        if up >= 0:
            return tier + 1
        return tier - 1 if down < 0 else tier
