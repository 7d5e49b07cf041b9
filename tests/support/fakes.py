"""An in-memory store and a publisher, for the batch processor and the decay sweep.

Both implement the worker's Protocols (``stream_app.worker.ports``), so they can be handed to
:class:`~stream_app.worker.batch.BatchProcessor` and ``sweep_partition`` as they are (and
mypy checks them against the Protocols).

:class:`MemoryStore` has the semantics of the Redis store (``stream_app.store.state``):
fenced writes (a write whose read fence token is not the stored one loses; a bare version
compares the stored version only, as ``lua/cas_write.lua`` does), the due index
scheduled with ``ZADD LT`` before the write, due entries by (time, member), and the
compare-and-set reschedule of ``lua/due_reschedule.lua``. :class:`Collect` keeps what it is
given, and refuses a batch holding a record over the producer's request size, as the
producer does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from stream_app.messages import OutMessage
from stream_app.store.records import Command, CustomerRecord, Write
from stream_app.worker.ports import NpsCounts, Publisher, Store

#: faust's default ``producer_max_request_size``.
MAX_REQUEST_SIZE = 1_000_000


class MemoryStore(Store):
    """Customer records, every write made, and the due index, in dictionaries."""

    def __init__(self, records: Mapping[str, CustomerRecord] | None = None) -> None:
        self.records: dict[str, CustomerRecord] = dict(records or {})
        #: Every write committed (the losers included), in order.
        self.writes: list[Write] = []
        self.due_index: dict[int, dict[str, float]] = defaultdict(dict)

    async def load(self, customer_ids: Sequence[str], /) -> dict[str, CustomerRecord]:
        return {cid: self.records.get(cid, CustomerRecord()) for cid in customer_ids}

    async def commit(
        self,
        writes: Sequence[Write],
        /,
        *,
        nps: NpsCounts | None = None,
        index: Sequence[Command] = (),
    ) -> list[str]:
        """Schedule, then write fenced; the customers whose write lost."""
        self.writes.extend(writes)
        for w in writes:
            due = self.due_index[w.due_partition]
            if w.due_at_ms is not None and w.due_at_ms < due.get(w.customer_id, math.inf):
                due[w.customer_id] = w.due_at_ms
        lost = []
        for w in writes:
            if not _fenced(self.records.get(w.customer_id, CustomerRecord()), w.fence):
                lost.append(w.customer_id)
                continue
            self.records[w.customer_id] = CustomerRecord(
                w.read_version + 1, dict(w.marks), w.state, w.explain, token=w.token
            )
        return lost

    async def due(self, partition: int, until_ms: float, limit: int, /) -> list[tuple[str, float]]:
        entries = sorted((t, cid) for cid, t in self.due_index[partition].items() if t <= until_ms)
        return [(cid, t) for t, cid in entries[:limit]]

    async def reschedule(
        self, partition: int, entries: Mapping[str, tuple[float, float | None]], /
    ) -> None:
        due = self.due_index[partition]
        for cid, (old, new) in entries.items():
            if due.get(cid) == old:
                if new is None:
                    del due[cid]
                else:
                    due[cid] = new
            elif new is not None and new < due.get(cid, math.inf):
                due[cid] = new


def _fenced(stored: CustomerRecord, fence: str) -> bool:
    """Whether a write naming ``fence`` as read may replace ``stored``."""
    if stored.fault is not None:
        return False  # (a key Redis refuses to read as a record: the write loses)
    if "." in fence:
        return stored.fence == fence
    return stored.version == int(fence)


class Collect(Publisher):
    """A publisher that keeps the messages it was given."""

    def __init__(self, limit: int = MAX_REQUEST_SIZE) -> None:
        self.sent: list[OutMessage] = []
        self.limit = limit

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        for m in messages:  # like the producer: a record over the limit fails the whole batch
            if len(m.value) + len(m.key or b"") > self.limit:
                raise RuntimeError(f"MessageSizeTooLargeError: {len(m.value)} bytes")
        self.sent.extend(messages)

    def on(self, topic: str) -> list[OutMessage]:
        """The messages sent to ``topic``, in order."""
        return [m for m in self.sent if m.topic == topic]
