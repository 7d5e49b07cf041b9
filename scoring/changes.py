"""Change records: a tier moved, or a segment was entered or exited.

Every change explains itself (score and dimension values at the moment it occurred,
its cause) and carries a deterministic ``change_id``: the same model, customer,
change and ``occurred_at`` always give the same id, so a replay reproduces the ids
of a live run and consumers can deduplicate.

>>> change = Change.create(
...     "c-42", "tier", "warm", from_tier="cold", to_tier="warm", entered=True,
...     occurred_at_ms=1.7e12, score=21.0, dimensions={"email": 21.0},
...     cause="event", cause_event_id="e1", model="default", model_version=1)
>>> change.cloudevent_type, change.entered, change.change_id
('engagement.tier.changed', True, 'a98f3fbae9d34a700faaa6e6fe34139a')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import orjson

from scoring.model import Model

__all__ = ["Cause", "Change", "change_id", "diff"]

#: What caused a change: an event, time passing, or a merge of two customers.
Cause = Literal["event", "decay", "merge"]


def change_id(
    *,
    model: str,
    model_version: int,
    customer_id: str,
    kind: str,
    name: str,
    from_tier: str | None,
    to_tier: str | None,
    entered: bool,
    occurred_at_ms: float,
) -> str:
    """blake2b-128 hex of the canonical JSON of the change's identity.

    ``occurred_at_ms`` enters as ``repr(float(...))``, the shortest exact spelling.
    """
    canonical = orjson.dumps(
        [
            model,
            model_version,
            customer_id,
            kind,
            name,
            from_tier,
            to_tier,
            entered,
            repr(float(occurred_at_ms)),
        ]
    )
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Change:
    """A tier change (``kind="tier"``) or a rule segment entered/exited (``"segment"``).

    For a tier change ``name`` is the tier entered (``to_tier``) and ``entered`` is
    True when moving up; for a segment change ``name`` is the rule's and both tier
    fields are None. (Its CloudEvent calls ``name`` ``segment``.)
    """

    change_id: str
    customer_id: str
    kind: Literal["tier", "segment"]
    name: str
    from_tier: str | None
    to_tier: str | None
    entered: bool
    occurred_at_ms: float
    score: float
    dimensions: Mapping[str, float]
    cause: Cause
    cause_event_id: str | None
    model: str
    model_version: int

    def __hash__(self) -> int:
        return hash(self.change_id)

    @property
    def cloudevent_type(self) -> str:
        """``engagement.tier.changed``, ``engagement.segment.entered`` or ``...exited``."""
        if self.kind == "tier":
            return "engagement.tier.changed"
        return "engagement.segment.entered" if self.entered else "engagement.segment.exited"

    @classmethod
    def create(
        cls,
        customer_id: str,
        kind: Literal["tier", "segment"],
        name: str,
        *,
        from_tier: str | None,
        to_tier: str | None,
        entered: bool,
        occurred_at_ms: float,
        score: float,
        dimensions: Mapping[str, float],
        cause: Cause,
        cause_event_id: str | None,
        model: str,
        model_version: int,
    ) -> Change:
        """A change record with its deterministic :func:`change_id`."""
        at = float(occurred_at_ms)
        cid = change_id(
            model=model,
            model_version=model_version,
            customer_id=customer_id,
            kind=kind,
            name=name,
            from_tier=from_tier,
            to_tier=to_tier,
            entered=entered,
            occurred_at_ms=at,
        )
        return cls(
            cid, customer_id, kind, name, from_tier, to_tier, entered, at, score,
            MappingProxyType(dict(dimensions)), cause, cause_event_id, model, model_version,
        )  # fmt: skip


def diff(
    model: Model,
    customer_id: str,
    *,
    tier_before: int,
    tier_after: int,
    segments_before: int,
    segments_after: int,
    occurred_at_ms: float,
    values: Sequence[float],
    score: float,
    cause: Cause,
    cause_event_id: str | None,
) -> tuple[Change, ...]:
    """The changes between two (tier, segment mask) pairs: the tier first, then the
    segments in model order."""
    dims = dict(zip(model.dimensions, values, strict=True))

    def make(kind: Literal["tier", "segment"], name: str, frm: str | None, to: str | None,
             entered: bool) -> Change:  # fmt: skip
        return Change.create(
            customer_id,
            kind,
            name,
            from_tier=frm,
            to_tier=to,
            entered=entered,
            occurred_at_ms=occurred_at_ms,
            score=score,
            dimensions=dims,
            cause=cause,
            cause_event_id=cause_event_id,
            model=model.name,
            model_version=model.version,
        )

    changes: list[Change] = []
    if tier_after != tier_before:
        to = model.tiers[tier_after].name
        changes.append(
            make("tier", to, model.tiers[tier_before].name, to, tier_after > tier_before)
        )
    flipped = segments_before ^ segments_after
    for i, rule in enumerate(model.segments):
        if flipped >> i & 1:
            changes.append(make("segment", rule.name, None, None, bool(segments_after >> i & 1)))
    return tuple(changes)
