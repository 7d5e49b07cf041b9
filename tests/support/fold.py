"""The offline reference: messages folded through the pure scoring core.

One clean pass of the worker, without the worker: each message is parsed and applied to
its customer's state in the order given (invalid ones are skipped and kept with their
reason, as the worker dead-letters them), optionally followed by the decay crossings up to
a horizon. Every expected state, change and NPS count in the tests comes from here.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from scoring import (
    Change,
    CustomerState,
    Event,
    InvalidEvent,
    Model,
    advance,
    apply,
    next_crossing,
    parse_event,
)


@dataclass
class Folded:
    """One customer's expected outcome: state, changes published, NPS responses counted."""

    state: CustomerState | None = None
    changes: list[Change] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    nps: list[tuple[str, str, str]] = field(default_factory=list)  # (day, tier, category)


class OfflineFold:
    """Customers' outcomes, built one message (or event) at a time."""

    def __init__(
        self,
        model: Model,
        *,
        at_ms: int | None = None,
        dedup_memory: int = 16,
        max_future_ms: int | None = None,
    ) -> None:
        self.model = model
        #: Processing time the messages are validated at (the worker's clock).
        self.now_ms = int(time.time() * 1000) if at_ms is None else at_ms
        self.dedup_memory = dedup_memory
        self._future: dict[str, Any] = (
            {} if max_future_ms is None else {"max_future_ms": max_future_ms}
        )
        self.customers: dict[str, Folded] = {}

    def add(self, raw: bytes) -> Event | InvalidEvent:
        """Parse and apply one message; the event, or why the worker dead-letters it."""
        try:
            event = parse_event(raw, self.model, now_ms=self.now_ms, **self._future)
        except InvalidEvent as exc:
            return exc
        self.apply(event)
        return event

    def apply(self, event: Event) -> None:
        """Apply one parsed event to its customer."""
        f = self.customers.setdefault(event.customer_id, Folded())
        result = apply(f.state, event, self.model, dedup_memory=self.dedup_memory)
        f.state = result.state
        f.changes.extend(result.changes)
        f.statuses.append(result.status)
        if result.nps is not None:
            f.nps.append((result.nps.day, result.nps.tier, result.nps.category))

    def advance(self, until_ms: float, *, one_by_one: bool = False) -> None:
        """Every customer's decay crossings up to ``until_ms``: in one ``scoring.advance``,
        or ``one_by_one`` as the decay sweep fires them, whatever its ticks (the same
        result: ``advance`` is idempotent)."""
        for cid, f in self.customers.items():
            if f.state is None:
                continue
            if not one_by_one:
                f.state, fired = advance(f.state, cid, until_ms, self.model)
                f.changes.extend(fired)
                continue
            while (at := next_crossing(f.state, self.model)) is not None and at <= until_ms:
                f.state, fired = advance(f.state, cid, at, self.model)
                f.changes.extend(fired)

    def changes(self) -> list[Change]:
        """Every change, customer by customer, each customer's in the order they happened."""
        return [c for f in self.customers.values() for c in f.changes]


def fold(
    raws: Iterable[bytes],
    model: Model,
    *,
    at_ms: int | None = None,
    dedup_memory: int = 16,
    max_future_ms: int | None = None,
) -> dict[str, Folded]:
    """Apply raw messages in the given order per customer, as one clean pass of the worker
    would (invalid ones skipped, as the worker dead-letters them)."""
    offline = OfflineFold(
        model, at_ms=at_ms, dedup_memory=dedup_memory, max_future_ms=max_future_ms
    )
    for raw in raws:
        offline.add(raw)
    return offline.customers


def settle(
    state: CustomerState, customer_id: str, model: Model, horizon_ms: float
) -> CustomerState:
    """``state`` with every decay crossing up to ``horizon_ms`` applied (pure).

    The worker's decay sweep fires crossings on its own schedule; settling both the stored
    state and the offline fold to one horizon makes them comparable whenever the sweep ran.
    ``settle(settle(s, t1), t2) == settle(s, t2)``, so a state the sweep already advanced
    part of the way settles to exactly the same result."""
    settled, _ = advance(state, customer_id, horizon_ms, model)
    return settled


def catch_up(
    expected: CustomerState, actual: CustomerState, customer_id: str, model: Model
) -> CustomerState:
    """``expected`` advanced through decay crossings to ``actual``'s clock, when the worker's
    decay sweep has moved the stored clock past the last event (a no-op otherwise)."""
    if actual.clock_ms > expected.clock_ms:
        expected, _ = advance(expected, customer_id, actual.clock_ms, model)
    return expected


def canonical(doc: Any) -> bytes:
    """A JSON document as comparable bytes (sorted keys)."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
