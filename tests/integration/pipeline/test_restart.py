"""A worker stopped mid-stream exits cleanly; its successor loses nothing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from stream_app.devkit import simulator
from stream_app.devkit.stack import LocalService
from stream_app.store.progress import StoredProgress, parse_progress
from tests.integration.workers import (
    OLD_MS,
    Worker,
    dumps,
    now_ms,
    relaunch,
    start_worker,
    stop_all,
    unique,
)
from tests.support.diff import state_diff
from tests.support.fold import fold, settle
from tests.support.kafka import last_sent

pytestmark = pytest.mark.integration


def renamed(docs: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The same events for customers named ``prefix + customer_id``."""
    return [{**d, "customer_id": prefix + d["customer_id"]} for d in docs]


def durable_progress(w: Worker) -> dict[int, StoredProgress]:
    """The progress the deployment keeps in Redis, per partition."""
    keys = [w.keys.progress(q) for q in range(w.settings.partitions)]
    return {q: parse_progress(w.redis.hgetall(k)) for q, k in enumerate(keys)}  # type: ignore[arg-type]


# --------------------------------------------------------------------------- stop, restart


def test_a_worker_stopped_mid_stream_exits_cleanly_and_its_successor_loses_nothing(
    tansu: LocalService, redis_server: LocalService, tmp_path: Path
) -> None:
    # small batches: many in flight when the signal comes, however fast the worker runs
    idle = start_worker(tansu, redis_server, tmp_path, name="restart", ENGAGEMENT_BATCH_SIZE="20")
    first: Worker | None = None
    second: Worker | None = None
    try:
        # a quiet spell first, as in production: the worker is caught up (the wall clock is
        # its progress while that lasts), its progress is saved, and it stops
        idle.wait_ready(at_ms=OLD_MS)
        idle_at = now_ms()

        def idle_saved() -> bool:  # every partition caught up at idle_at or later, and saved
            kept = durable_progress(idle).values()
            return all(len(s.upstream) == 4 and min(s.upstream.values()) >= idle_at for s in kept)

        idle.wait(idle_saved, timeout=15, what="the idle worker's progress saved")
        unclean = stop_all([idle])
        assert not unclean, "\n".join(unclean)
        # then history, all of it in the input before the next worker starts: a worker that
        # reaches the end of the input while history is still being produced takes the wall
        # clock for its progress (the backfill limit of docs/architecture.md)
        config = simulator.SimConfig.ending(now_ms(), 60, customers=200, seed=11)
        tag = unique("rs")
        docs = renamed(list(simulator.history(config)), f"{tag}-")
        sent = idle.produce_events(docs)
        customers = sorted({d["customer_id"] for d in docs})

        first = relaunch(idle, "restart-1")  # same group, topics and key prefix
        first.wait(
            lambda: any(s is not None for s in first.states(customers).values()),
            what="the first batches scored",
        )
        began = time.monotonic()
        unclean = stop_all([first])  # SIGTERM while batches are in flight
        assert not unclean, "\n".join(unclean)
        # well within stop_all's 20 s: the worker stopped by itself, not by SIGKILL
        assert time.monotonic() - began < 15
        kept = durable_progress(first)

        second = relaunch(first, "restart-2")
        at_stop = second.states(customers)  # the successor has not joined the group yet
        done = sum(s.events_applied for s in at_stop.values() if s is not None)
        assert 0 < done < len(docs), (done, len(docs))  # it does have work left
        # the successor goes on from the event time its predecessor processed, not from the
        # wall clock of its idle spell: else its sweep may fire crossings ahead of the
        # events left (applied late then, capped types beyond the cap window adding nothing)
        applied = max(s.last_event_ms or OLD_MS for s in at_stop.values() if s is not None)
        ahead = {q: s.input_ms for q, s in kept.items() if (s.input_ms or OLD_MS) > applied}
        assert not ahead, (ahead, applied)
        second.wait_processed(last_sent(docs, sent), timeout=90)
        expected = fold((dumps(d) for d in docs), second.model)
        states = second.states(customers)
        horizon = max([now_ms(), *(s.clock_ms for s in states.values() if s)])
        counts = Counter(d["customer_id"] for d in docs)
        problems = {}
        for cid, f in expected.items():
            got = states[cid]
            assert got is not None and f.state is not None
            diffs = state_diff(
                settle(got, cid, second.model, horizon),
                settle(f.state, cid, second.model, horizon),
                second.model,
                horizon_ms=horizon,
                any_order=True,
            )
            if got.events_applied != counts[cid]:  # each event applied exactly once
                diffs.append(f"events_applied {got.events_applied} != {counts[cid]}")
            if diffs:
                problems[cid] = diffs
        assert not problems, problems
    finally:
        unclean = stop_all([w for w in (idle, first, second) if w is not None])
    assert not unclean, "\n".join(unclean)
