"""Two workers sharing the partitions fire each crossing once; one leaving hands its
crossings over."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.devkit.stack import LocalService
from stream_app.messages import expected_partition
from tests.integration.decay.helpers import (
    MAX_LAG_MS,
    Published,
    Tail,
    expected_doc,
    offline,
    wait_published,
)
from tests.integration.workers import (
    Worker,
    assigned,
    event,
    now_ms,
    start_worker,
    stop_all,
    unique,
)
from tests.support.kafka import in_offset_order

pytestmark = pytest.mark.integration


SHARED = (
    "ENGAGEMENT_INPUT_TOPIC",
    "ENGAGEMENT_OUTPUT_TOPIC",
    "ENGAGEMENT_DLQ_TOPIC",
    "ENGAGEMENT_APP_ID",
    "ENGAGEMENT_KEY_PREFIX",
)


def spread(prefix: str, i: int, partitions: int) -> str:
    """A unique customer id owned by partition ``i % partitions``."""
    while expected_partition(cid := unique(f"{prefix}{i}"), partitions) != i % partitions:
        pass
    return cid


class Cooling:
    """Customers pushed to warm or hot at about ``t0`` and left alone, with what one
    offline pass gives for them up to ``horizon`` (and a minute beyond)."""

    def __init__(self, worker: Worker, prefix: str, count: int, span_ms: int = 12_000) -> None:
        n = worker.settings.partitions
        self.customers = [spread(prefix, i, n) for i in range(count)]
        self.t0 = now_ms()
        docs = [
            event(f"{cid}-{j}", cid, "webinar_attended", self.t0 + i * 150)
            for i, cid in enumerate(self.customers)
            for j in range(5 + i % 4)  # 50..80 points: warm or hot, then cold
        ]
        sent = worker.produce_events(docs)
        self.horizon = self.t0 + span_ms
        raws = in_offset_order(docs, sent)
        want = offline(raws, worker.model, self.horizon + 60_000, at_ms=now_ms())
        self.all = [c for cid in self.customers for c in want[cid]]
        self.expected = {expected_doc(c) for c in self.all if c.occurred_at_ms <= self.horizon}
        self.decay = [
            c for c in self.all if c.cause == "decay" and c.occurred_at_ms <= self.horizon
        ]

    def check(self, published: Published) -> None:
        assert not published.ids_with_two_contents()
        assert published.docs() <= {expected_doc(c) for c in self.all}

    def lags(self, published: Published, partitions: set[int], n: int) -> list[float]:
        return sorted(
            published.received(expected_doc(c)) - c.occurred_at_ms
            for c in self.decay
            if expected_partition(c.customer_id, n) in partitions
        )


def test_two_workers_sharing_the_partitions_fire_each_crossing_once(
    tansu: LocalService,
    redis_server: LocalService,
    tmp_path_factory: pytest.TempPathFactory,
    model_file: Path,
) -> None:
    """Two workers of one consumer group, two partitions each: every crossing of twelve
    cooling customers is published on time, none under two contents (re-publishing the
    same change is allowed and counted). Then one worker leaves while eight more
    customers cool: its partitions move to the other, which fires their crossings."""
    workdir = tmp_path_factory.mktemp("decay-pair")
    first = start_worker(tansu, redis_server, workdir / "a", name="pair-a", model_file=model_file)
    workers = [first]
    try:
        shared = {k: first.env[k] for k in SHARED}
        second = start_worker(
            tansu, redis_server, workdir / "b", name="pair-b", model_file=model_file, **shared
        )
        workers.append(second)
        n = first.settings.partitions

        def split() -> tuple[set[int], set[int]] | None:
            a, b = assigned(first), assigned(second)
            if a and b and not a & b and a | b == set(range(n)):
                return a, b
            return None

        owned = first.wait(split, timeout=45.0, what="the partitions split over both workers")
        first.wait_ready()
        with Tail(first.brokers, first.settings.output_topic) as tail:
            shared_round = Cooling(first, "pair", 12)
            timeout = (shared_round.horizon - now_ms()) / 1000.0 + 10.0
            published = wait_published(
                first, tail, shared_round.customers, shared_round.expected, timeout
            )
            assert split() == owned, "the group rebalanced while both workers ran"
            shared_round.check(published)
            lags = shared_round.lags(published, set(range(n)), n)
            print(
                f"two workers owning {sorted(owned[0])} and {sorted(owned[1])}: "
                f"{len(shared_round.decay)} decay changes, {published.duplicates()} duplicate(s); "
                f"firing lag ms: median {lags[len(lags) // 2]:.0f}, max {lags[-1]:.0f}"
            )
            assert lags[-1] < MAX_LAG_MS

            moved = Cooling(first, "moved", 8)
            scored = {expected_doc(c) for c in moved.all if c.cause == "event"}
            wait_published(first, tail, moved.customers, scored, 20.0)
            second.stop()  # SIGTERM: it leaves the group with crossings still to come
            workers.remove(second)
            timeout = (moved.horizon - now_ms()) / 1000.0 + 20.0
            published = wait_published(first, tail, moved.customers, moved.expected, timeout)
            assert assigned(first) == set(range(n))
            moved.check(published)
            kept, taken = moved.lags(published, owned[0], n), moved.lags(published, owned[1], n)
            print(
                f"after {second.name} left: {len(moved.decay)} decay changes, "
                f"{published.duplicates()} duplicate(s); firing lag ms on the partitions kept: "
                f"max {kept[-1]:.0f}, on those taken over: max {taken[-1]:.0f}"
            )
        for w in workers:
            assert w.process.poll() is None, w.log_tail()
    finally:
        stop_all(workers)
