"""What folding one customer's events of a batch gives: :class:`Fold`."""

from __future__ import annotations

from dataclasses import dataclass, field

from scoring import Change, CustomerState
from stream_app.messages import OutMessage
from stream_app.store.records import Write


@dataclass(slots=True)
class Fold:
    """One customer's outcome within a batch."""

    write: Write | None
    changes: list[Change]
    nps: list[tuple[str, int, int, str]]  # topic, partition, offset, counter field
    state: CustomerState | None = None
    stored: CustomerState | None = None  # the state as read (its standing: only if needed)
    dead: list[OutMessage] = field(default_factory=list)  # events that broke ``apply``
    dead_reason: str = "internal_error"  # (or why the whole customer was dead-lettered)
    applied: int = 0
    duplicate: int = 0
    capped: int = 0
    redelivered: int = 0
    suspect: int = 0  # redelivered by offset, with an event id not among the recent ones
