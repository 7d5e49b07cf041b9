"""Per-customer scoring state: an immutable value, compactly serialisable.

The state holds each dimension's value *at the state's clock* (the largest event time
seen, or the last decay crossing applied); values at any other time follow from the
half-lives. Everything else is what the rules need: the tier, the segments, the last
time of the event types a rule looks at, the latest NPS answer, the cap counters of
recent days and a bounded memory of recent event ids. Its bytes are
:mod:`scoring.codec.state`'s.

>>> from scoring.model import load_default_model
>>> model = load_default_model()
>>> state = new_state()
>>> state.is_new, state.tier_name(model), state.segment_names(model)
(True, 'cold', ())
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from scoring.decay import decay
from scoring.model import DAY_MS, Model
from scoring.nps import Category, category
from scoring.timeline import Timeline

__all__ = [
    "FINGERPRINT_BYTES",
    "CustomerState",
    "Values",
    "decayed_values",
    "fingerprint",
    "new_state",
    "segment_names",
    "tier_name",
    "timeline",
    "utc_day",
    "values_at",
]

#: Bytes of blake2b digest kept per remembered event id.
FINGERPRINT_BYTES = 6


@dataclass(frozen=True, slots=True)
class CustomerState:
    """One customer's state. Index-based fields follow the model's layout.

    * ``clock_ms``: the time ``values`` are at (``-inf`` before the first event);
    * ``values``: one value per ``model.dimensions`` (empty: all zero);
    * ``tier``: index into ``model.tiers``;
    * ``segments``: bit ``i`` set when the customer is in ``model.segments[i]``;
    * ``last_seen``: last event time per ``model.tracked`` name (None: never; empty: never);
    * ``nps_score`` / ``nps_at_ms``: the latest NPS answer by event time;
    * ``caps``: ``(index in model.event_type_names, UTC day number, count)`` of capped types;
    * ``recent_ids``: fingerprints of the last event ids applied, oldest first;
    * ``events_applied``: events applied (capped ones included, duplicates not);
    * ``last_event_ms``: the largest event time applied.
    """

    clock_ms: float = -math.inf
    values: tuple[float, ...] = ()
    tier: int = 0
    segments: int = 0
    last_seen: tuple[int | None, ...] = ()
    nps_score: int | None = None
    nps_at_ms: int | None = None
    caps: tuple[tuple[int, int, int], ...] = ()
    recent_ids: tuple[bytes, ...] = ()
    events_applied: int = 0
    last_event_ms: int | None = None

    @property
    def is_new(self) -> bool:
        """True before the first event."""
        return self.clock_ms == -math.inf

    @property
    def nps_category(self) -> Category | None:
        """Category of the latest NPS answer, or None."""
        return None if self.nps_score is None else category(self.nps_score)

    def tier_name(self, model: Model) -> str:
        """The name of the current tier."""
        return model.tiers[self.tier].name

    def segment_names(self, model: Model) -> tuple[str, ...]:
        """The segments the customer is in, in model order."""
        return tuple(r.name for i, r in enumerate(model.segments) if self.segments >> i & 1)

    def dimension_values(self, model: Model) -> tuple[float, ...]:
        """``values`` with one entry per dimension (zeros for a new state)."""
        return self.values or (0.0,) * len(model.dimensions)

    def last_seen_of(self, model: Model, name: str) -> int | None:
        """Last event time of tracked type ``name`` (or ``any``), None if never."""
        if not self.last_seen:
            return None
        return self.last_seen[model.tracked.index(name)]


@dataclass(frozen=True, slots=True)
class Values:
    """A customer's score and dimension values at one time."""

    score: float
    dimensions: Mapping[str, float]


def segment_names(state: CustomerState, model: Model) -> tuple[str, ...]:
    """The segments ``state`` is in, in model order (``state.segment_names(model)``)."""
    return state.segment_names(model)


def tier_name(state: CustomerState, model: Model) -> str:
    """The name of ``state``'s tier (``state.tier_name(model)``)."""
    return state.tier_name(model)


def new_state() -> CustomerState:
    """The state of a customer never seen: lowest tier, no segments, no clock."""
    return CustomerState()


def fingerprint(event_id: str) -> bytes:
    """The short digest remembered for an event id.

    >>> fingerprint("e1").hex()
    'fcb3209c5d09'
    """
    return hashlib.blake2b(event_id.encode(), digest_size=FINGERPRINT_BYTES).digest()


def utc_day(ts_ms: float) -> int:
    """Days since 1970-01-01 of the UTC calendar day holding ``ts_ms``.

    >>> utc_day(0), utc_day(86_399_999), utc_day(86_400_000)
    (0, 0, 1)
    """
    return int(ts_ms // DAY_MS)


def decayed_values(state: CustomerState, model: Model, t_ms: float) -> tuple[float, ...]:
    """Each dimension's value at ``t_ms``: ``value * 2 ** (-(t - clock) / half_life)``.

    This is *the* evaluation of values away from the clock: crossings, events and
    reports all use it, so that they agree to the last bit. For ``t < clock`` it is
    the same formula run backwards (values grow), which is only the "as of" value of
    what the state holds, ignoring events after ``t``.
    """
    if state.is_new:
        return (0.0,) * len(model.dimensions)
    dt = t_ms - state.clock_ms
    values, half_lives = state.dimension_values(model), model.half_lives_ms
    decayed = []
    for v, h in zip(values, half_lives, strict=True):
        if not v:  # (0 * inf would be nan far in the past)
            decayed.append(v)
            continue
        decayed.append(v * decay(dt, h))
    return tuple(decayed)


def timeline(
    state: CustomerState, model: Model, values: tuple[float, ...] | None = None
) -> Timeline:
    """The metrics of ``state`` from its clock on; its values must be finite (``values``:
    its :meth:`~CustomerState.dimension_values`, if at hand)."""
    if values is None:
        values = state.dimension_values(model)
    return Timeline(
        state.clock_ms,
        values,
        state.last_seen,
        state.nps_score,
        half_lives=model.half_lives_ms,
        rates=model.plan.rates,
    )


def values_at(state: CustomerState, model: Model, t_ms: float) -> Values:
    """Score and dimension values at ``t_ms`` (see :func:`decayed_values`).

    >>> from scoring.model import load_default_model
    >>> model = load_default_model()
    >>> email = model.dimension_index("email")
    >>> values = [0.0] * len(model.dimensions)
    >>> values[email] = 8.0
    >>> state = CustomerState(clock_ms=0.0, values=tuple(values))
    >>> v = values_at(state, model, 14 * 86_400_000)       # one email half-life later
    >>> v.score, v.dimensions["email"]
    (4.0, 4.0)
    """
    values = decayed_values(state, model, t_ms)
    return Values(
        math.fsum(values), MappingProxyType(dict(zip(model.dimensions, values, strict=True)))
    )
