"""What a customer's new state means for the read-side indexes, when the worker keeps them.

The indexes (segment member sets, tier moves, tier counts: see
:mod:`stream_app.store.readstore`) are written by the batch and by the sweep, in the
same pipeline as the records. Without indexes (``indexes`` None) every answer here is
"nothing to write".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scoring import Change, CustomerState, Model, segment_names
from stream_app.store.records import Command, Membership
from stream_app.worker.ports import Indexes


class ReadSide:
    """Membership, tier moves and index commands for new states."""

    __slots__ = ("indexes", "model")

    def __init__(self, model: Model, indexes: Indexes | None) -> None:
        self.model = model
        self.indexes = indexes

    @property
    def enabled(self) -> bool:
        """True when the worker keeps read-side indexes."""
        return self.indexes is not None

    def membership(self, state: CustomerState) -> Membership:
        """The rule segments ``state`` is in (what the member sets hold of it)."""
        return frozenset(segment_names(state, self.model))

    def tier_move(self, read: CustomerState | None, new: CustomerState) -> tuple[str, str]:
        """A :class:`stream_app.store.records.Write`'s ``tier_move``: ("", "") when
        there are no read indexes, else (tier read or "" for a new customer, new tier)."""
        if self.indexes is None:
            return "", ""
        tiers = self.model.tiers
        return "" if read is None else tiers[read.tier].name, tiers[new.tier].name

    def commands(
        self,
        members: Mapping[str, Membership],
        changes: Sequence[Change],
        now_ms: float,
        *,
        previous: Mapping[str, Membership | None] | None = None,
    ) -> list[Command]:
        """The index commands for these memberships and changes (none without indexes)."""
        if self.indexes is None:
            return []
        return self.indexes.commands(members, changes, now_ms, previous=previous)
