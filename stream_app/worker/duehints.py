"""What this worker last wrote to the due index per customer, and for which record.

The due index only needs a lower bound of each customer's next crossing (``ZADD LT``
keeps the earliest; the sweep computes the exact crossing when the entry comes due and
reschedules), and no entry when there is no crossing. Two uses, both proven before use:

- **The next write.** After an event, :func:`scoring.quiet_until` can often show, far
  more cheaply than the root search of :func:`scoring.next_crossing`, that the new state
  stays quiet until the time written last (``math.inf``: for good); that answer is then
  written again (:meth:`stream_app.worker.batch.BatchProcessor.due_at`). Failing that, a
  time a horizon after the state's clock, if the state is proven quiet until then.
- **The next event's pre-check.** A time written for a state has no crossing of that
  state before it. When the record loaded is the very one this worker wrote (same
  version), :func:`scoring.apply` is told so and skips the search for crossings due
  before an earlier event.

Correctness never depends on a hint being present or fresh: a hint used for a write is
proven for the new state, and one used for the pre-check is tied to the record's fence
token, which no other write ever carries (not even after a Redis failover that lost
writes and handed their version numbers out again). Bounded: cleared
when full, and on a rebalance.
"""

from __future__ import annotations

import math

#: Customers whose last due time a worker remembers.
DUE_HINTS = 200_000


class DueHints:
    """Customer -> (time written to the due index, fence token of the record it is for).

    >>> hints = DueHints()
    >>> hints.set("c-1", 5.0, version="3.a1")
    >>> hints.get("c-1"), hints.quiet_before("c-1", "3.a1"), hints.quiet_before("c-1", "3.b2")
    (5.0, 5.0, None)
    >>> hints.set("c-2", None, version="1.a2")         # no crossing: "never"
    >>> hints.get("c-2")
    inf
    """

    __slots__ = ("_at", "capacity")

    def __init__(self, capacity: int = DUE_HINTS) -> None:
        self._at: dict[str, tuple[float, str | None]] = {}
        self.capacity = capacity

    def get(self, customer_id: str) -> float | None:
        """The time written last (``math.inf``: no crossing), whatever the record."""
        entry = self._at.get(customer_id)
        return None if entry is None else entry[0]

    def quiet_before(self, customer_id: str, version: str) -> float | None:
        """A time before which the record with fence token ``version`` has no crossing,
        if known here."""
        entry = self._at.get(customer_id)
        return entry[0] if entry is not None and entry[1] == version else None

    def set(self, customer_id: str, at_ms: float | None, version: str | None = None) -> None:
        """Remember the due time written, ``at_ms`` (None: no crossing, kept as
        ``math.inf``), for the record with fence token ``version`` (None: not known to be
        stored)."""
        if len(self._at) >= self.capacity and customer_id not in self._at:
            self._at.clear()
        self._at[customer_id] = (math.inf if at_ms is None else at_ms, version)

    def discard(self, customer_id: str) -> None:
        """Forget what was written for one customer."""
        self._at.pop(customer_id, None)

    def clear(self) -> None:
        self._at.clear()

    def __len__(self) -> int:
        return len(self._at)
