"""The records this worker wrote last, kept decoded, so the next batch need not decode them.

An active customer's next events usually reach the worker that wrote its record last
(the customer's partition is this worker's). Decoding that record again (state and
explanation) cost ~17 µs per event in the latency workload, for objects this worker
already had. So after a winning write the worker keeps, per customer, the bytes it wrote
and the objects they encode; when the record it reads next holds exactly those bytes,
the objects are reused.

Correctness never depends on the cache: a hit needs the bytes read from Redis to be
equal to the bytes kept (a comparison, not a version or a guess), and decoding is a pure
function of those bytes and the model, so a record changed by anyone else, or by the
sweep, is decoded as before. Bounded: the least recently used customer goes first;
cleared on a rebalance. ``capacity`` 0 switches it off.
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring import CustomerState, Explanation


@dataclass(frozen=True, slots=True)
class _Entry:
    state_raw: bytes
    state: CustomerState
    explain_raw: bytes | None
    explain: Explanation | None


class RecordCache:
    """Customer -> the state and explanation bytes written last, with their decoded objects.

    >>> cache = RecordCache(capacity=2)
    >>> s, e = CustomerState(clock_ms=1.0), None
    >>> cache.put("c-1", b"S1", s, None, e)
    >>> cache.get("c-1", b"S1", None) == (s, e), cache.get("c-1", b"S2", None)
    (True, None)
    >>> cache.put("c-2", b"S", s, None, e); cache.put("c-3", b"S", s, None, e)
    >>> len(cache), cache.get("c-1", b"S1", None)  # c-1 was the least recently used
    (2, None)
    """

    __slots__ = ("_entries", "capacity", "hits", "misses")

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity: must be >= 0, got {capacity}")
        self.capacity = capacity
        self._entries: dict[str, _Entry] = {}
        self.hits = 0  # lookups answered from the cache
        self.misses = 0  # lookups of a stored record that had to be decoded

    def get(
        self, customer_id: str, state_raw: bytes, explain_raw: bytes | None
    ) -> tuple[CustomerState, Explanation | None] | None:
        """The decoded objects of exactly these bytes, if this worker wrote them last."""
        entries = self._entries
        entry = entries.pop(customer_id, None)
        if entry is None:
            self.misses += 1
            return None
        entries[customer_id] = entry  # most recently used last
        if entry.state_raw != state_raw or entry.explain_raw != explain_raw:
            self.misses += 1
            return None
        self.hits += 1
        return entry.state, entry.explain

    def put(
        self,
        customer_id: str,
        state_raw: bytes,
        state: CustomerState,
        explain_raw: bytes | None,
        explain: Explanation | None,
    ) -> None:
        """Remember what was just written for a customer (bytes and what they encode)."""
        if not self.capacity:
            return
        entries = self._entries
        entries.pop(customer_id, None)
        if len(entries) >= self.capacity:
            del entries[next(iter(entries))]
        entries[customer_id] = _Entry(state_raw, state, explain_raw, explain)

    def forget(self, customer_id: str) -> None:
        self._entries.pop(customer_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
