"""One decay tick's watermark work: load, send and save progress; how far each sweep goes.

Called by the runtime before it sweeps the partitions it owns. Its dependencies are
handed in: the worker's :class:`~stream_app.worker.watermarks.Watermarks`, a publisher
(the broker), a :class:`ProgressStore` (Redis), and which of
the owned input partitions are caught up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from stream_app.store.progress import StoredProgress
from stream_app.worker.metrics import WorkerMetrics
from stream_app.worker.ports import Consumer, Publisher
from stream_app.worker.watermarks import Watermarks


class ProgressStore(Protocol):
    """Durable progress per partition number (:class:`stream_app.store.progress.ProgressStore`)."""

    async def load(self, partitions: Sequence[int], /) -> dict[int, StoredProgress]: ...

    async def save(self, progress: Mapping[int, StoredProgress], /) -> None: ...


class NoProgressStore:
    """Keeps nothing: for a scorer without Redis (tests, benchmarks)."""

    async def load(self, partitions: Sequence[int], /) -> dict[int, StoredProgress]:
        return {p: StoredProgress() for p in partitions}

    async def save(self, progress: Mapping[int, StoredProgress], /) -> None:
        return None


async def tick(
    watermarks: Watermarks,
    *,
    publisher: Publisher,
    store: ProgressStore,
    consumer: Consumer,
    owned: Sequence[int],
    now_ms: float,
) -> dict[int, float | None]:
    """Per owned partition, the time up to which its decay sweep may fire (None: not yet).

    1. Merge the durable progress of partitions newly owned (a restart, a rebalance).
    2. Send the watermark of every owned input partition whose progress moved, as a
       control record to every by-customer partition. Progress only counts batches whose
       forwards were acknowledged, so each watermark comes after the forwards it covers.
    3. Save the progress that changed (already justified by durable batches): the event
       time read, not the wall clock of a caught-up partition (:meth:`Watermarks.snapshot`).
    """
    new = [q for q in owned if q not in watermarks.loaded]
    if new:
        for q, stored in (await store.load(new)).items():
            watermarks.merge(q, stored)
    progress = {
        p: watermarks.input_progress(p, now_ms, caught_up=watermarks.input_caught_up(p, consumer))
        for p in owned
    }
    marks = watermarks.to_emit({p: at for p, at in progress.items() if at is not None})
    if marks:
        await publisher.publish(watermarks.messages(marks))
        watermarks.sent(marks)
    snapshots = {q: watermarks.snapshot(q) for q in owned}
    changed = {q: s for q, s in snapshots.items() if watermarks.saved.get(q) != s}
    if changed:
        await store.save(changed)
        watermarks.saved.update(changed)
    return {q: watermarks.until(q, progress[q]) for q in owned}


def gauges(
    metrics: WorkerMetrics,
    watermarks: Watermarks,
    limits: Mapping[int, float | None],
    now_ms: float,
) -> None:
    """The per-partition watermark, its lag behind the wall clock, and the forwarded share."""
    for p, until in limits.items():
        if until is not None and until != math.inf:
            metrics.watermark.set(until / 1000.0, partition=str(p))
            metrics.watermark_lag.set(max(0.0, (now_ms - until) / 1000.0), partition=str(p))
        share = watermarks.forwarded_share(p)
        if share is not None:
            metrics.forwarded_share.set(share, partition=str(p))
