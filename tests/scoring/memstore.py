"""An in-memory stand-in for the worker's Redis store and its publisher, for tests of the
batch processor, the sweep and the runtime without services (the same semantics as
``stream_app.store.StateStore``, which the integration tests run against Redis)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

from stream_app.pipeline import OutMessage
from stream_app.store import StoredRecord, Write


class MemoryStore:
    """The parts of ``stream_app.store.StateStore`` the batch processor and the sweep
    use, in memory, with the same semantics: fenced writes, ``ZADD LT`` scheduling
    before the write, due entries by (time, member), compare-and-set reschedule."""

    def __init__(self) -> None:
        self.records: dict[str, StoredRecord] = {}
        self.due_index: dict[int, dict[str, float]] = defaultdict(dict)

    async def load(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        return {cid: self.records.get(cid, StoredRecord()) for cid in ids}

    async def commit(
        self, writes: Sequence[Write], *, nps: object = None, index: object = ()
    ) -> list[str]:
        for w in writes:
            index = self.due_index[w.due_partition]
            if w.due_at_ms is not None and w.due_at_ms < index.get(w.customer_id, math.inf):
                index[w.customer_id] = w.due_at_ms
        lost = []
        for w in writes:
            if self.records.get(w.customer_id, StoredRecord()).version != w.read_version:
                lost.append(w.customer_id)
                continue
            self.records[w.customer_id] = StoredRecord(
                w.read_version + 1, dict(w.marks), w.state, w.explain
            )
        return lost

    async def due(self, partition: int, until_ms: float, limit: int) -> list[tuple[str, float]]:
        entries = sorted((t, cid) for cid, t in self.due_index[partition].items() if t <= until_ms)
        return [(cid, t) for t, cid in entries[:limit]]

    async def reschedule(
        self, partition: int, entries: Mapping[str, tuple[float, float | None]]
    ) -> None:
        index = self.due_index[partition]
        for cid, (old, new) in entries.items():  # as lua/due_reschedule.lua
            if index.get(cid) == old:
                if new is None:
                    del index[cid]
                else:
                    index[cid] = new
            elif new is not None and new < index.get(cid, math.inf):
                index[cid] = new


class Collect:
    """A publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[OutMessage] = []

    async def publish(self, messages: Sequence[OutMessage]) -> None:
        self.sent.extend(messages)
