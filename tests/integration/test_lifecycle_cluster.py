"""Erase and merge on a real 3-master Redis Cluster: the single-Redis scenarios with the
worker's scorer over the cluster, and a worker process erasing and merging across slots."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.cluster
from redis.asyncio.cluster import RedisCluster

from scoring import load_default_model, values_at
from stream_app.devkit.stack import LocalService, redis_cluster_url
from stream_app.messages import expected_partition
from stream_app.store.keys import Keys, digest, slot_of
from stream_app.store.state import connect
from stream_app.store.tiercounts import read_tier_counts
from tests.integration.lifecycle_bus import Deployment
from tests.integration.scaleout import Store
from tests.integration.test_lifecycle import (
    alias_chain_and_cycles,
    erase_leaves_no_trace,
    merge_across_partitions,
)
from tests.integration.test_lifecycle_fence import (
    frozen_writer_cannot_recreate,
    suppression_list_prunes_and_reads_the_old_layout,
)
from tests.integration.workers import DAY_MS, event, now_ms, start_worker, unique

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "scenario",
    [
        erase_leaves_no_trace,
        merge_across_partitions,
        alias_chain_and_cycles,
        frozen_writer_cannot_recreate,
        suppression_list_prunes_and_reads_the_old_layout,
    ],
    ids=lambda f: f.__name__,
)
def test_erase_and_merge_on_redis_cluster(
    redis_cluster: list[LocalService], scenario: Callable[[Deployment], Awaitable[None]]
) -> None:
    """The erase and merge scenarios of single Redis, with the worker's scorer over the
    cluster: the same outcomes (no trace but the keyed hash, tier counts equal to a recount
    of the per-slot hashes, merged states the sum within 1e-9), merges across slots and
    the frozen writer refused by a script that sees only the customer's slot."""

    async def main() -> None:
        client = connect(redis_cluster_url(redis_cluster))
        assert isinstance(client, RedisCluster)
        try:
            await scenario(Deployment(client, unique("lcc")))
        finally:
            await client.aclose()

    asyncio.run(main())


def test_erase_and_merge_through_a_worker_on_redis_cluster(
    tansu: LocalService,
    redis_cluster: list[LocalService],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A worker process on the cluster erases one customer and merges A into B, then B into
    C (three slots), requests and late events sent by a producer: no trace of the erased id
    on any node but its keyed hash, the per-slot tier counts equal a recount, and C is the
    sum of the three at its clock plus the late event of A (within 1e-9)."""
    model, url = load_default_model(), redis_cluster_url(redis_cluster)
    a, b, c = _on_different_slots_and_partitions(["lc-a", "lc-b", "lc-c"], 4)
    gone, kept = "lc-erase-me", "lc-kept"
    worker = start_worker(
        tansu, redis_cluster[0], tmp_path_factory.mktemp("cluster-lifecycle"), name="clc",
        partitions=4, ENGAGEMENT_REDIS_URL=url, ENGAGEMENT_SUPPRESSION_SECRET="cluster-secret",
    )  # fmt: skip
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster[0].port)
    store = Store(client, Keys(worker.settings.key_prefix, model.name))
    everyone = [a, b, c, gone, kept]
    try:
        start = now_ms() - DAY_MS
        kinds = ["webinar_attended", "review_submitted", "email_click", "webinar_attended"]
        histories = [event(f"{x}/{n}", x, k, start + n * 1000) for x in everyone
                     for n, k in enumerate(kinds)]  # fmt: skip
        worker.produce_events(histories)

        def applied(n: int, ids: list[str]) -> bool:
            states = store.states(ids, model).values()
            return all(s is not None and s.events_applied == n for s in states)

        worker.wait(lambda: applied(4, everyone), timeout=60, what="every history applied")
        before = store.states([a, b, c], model)
        late_at = now_ms()
        late_gone = event("late-g", gone, "email_click", late_at)
        worker.produce_events([_request("erase", gone), late_gone, _request("merge", a, into=b)])
        worker.wait(lambda: store.records([a])[a] is None, timeout=60, what="a merged into b")
        late_a = event("late-a", a, "email_click", late_at)
        worker.produce_events([_request("merge", b, into=c), late_a])
        worker.wait(lambda: applied(13, [c]), timeout=60, what="b merged into c, a's late event")

        assert store.records([a, b, gone]) == {a: None, b: None, gone: None}
        hashed = digest(b"cluster-secret", gone).encode()
        assert _cluster_trace(redis_cluster, worker.settings.key_prefix, gone) == []
        assert client.hget(store.keys.suppression(gone), hashed) is not None
        final = store.states([c], model)[c]
        assert final is not None
        late = model.event_types["email_click"]
        for dim in model.dimensions:
            want = math.fsum(values_at(s, model, final.clock_ms).dimensions[dim]
                             for s in before.values() if s)  # fmt: skip
            want += late.points if dim == late.dimension else 0.0
            got = values_at(final, model, final.clock_ms).dimensions[dim]
            assert math.isclose(got, want, rel_tol=1e-9), (dim, got, want)
        tiers = [t.name for t in model.tiers]
        recount = [0] * len(tiers)
        for s in store.states([c, kept], model).values():  # (every customer left)
            assert s is not None
            recount[s.tier] += 1
        assert asyncio.run(_tier_counts(url, store.keys, tiers)) == recount
        assert "Traceback" not in worker.log_tail(200_000)
    finally:
        client.close()
        worker.stop()


async def _tier_counts(url: str, keys: Keys, tiers: list[str]) -> list[int]:
    """The per-slot tier counts summed, as ``/v1/tiers`` sums them."""
    client = connect(url)
    try:
        return await read_tier_counts(client, keys, tiers)
    finally:
        await client.aclose()


def _request(kind: str, cid: str, into: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"event_id": f"req-{kind}-{cid}", "customer_id": cid,
                           "type": f"engagement.customer.{kind}",
                           "timestamp": now_ms()}  # fmt: skip
    if into is not None:
        doc["properties"] = {"into": into}
    return doc


def _on_different_slots_and_partitions(prefixes: list[str], partitions: int) -> list[str]:
    """One id per prefix, on pairwise different slots and owner partitions."""
    out: list[str] = []
    for prefix in prefixes:
        k = 0
        while True:
            cid = f"{prefix}-{k}"
            taken = {(slot_of("{" + x + "}"), expected_partition(x, partitions)) for x in out}
            if not any(
                slot_of("{" + cid + "}") == s or expected_partition(cid, partitions) == p
                for s, p in taken
            ):
                out.append(cid)
                break
            k += 1
    return out


def _cluster_trace(nodes: list[LocalService], prefix: str, cid: str) -> list[str]:
    """Every key of ``prefix`` on any node whose name or content holds ``cid``."""
    needle, found = cid.encode(), []
    for node in nodes:
        plain = redis.Redis(port=node.port)
        try:
            for key in plain.scan_iter(match=f"{prefix}:*", count=1000):
                kind = plain.type(key).decode()
                values: list[bytes] = []
                if kind == "string":
                    values = [plain.get(key) or b""]
                elif kind == "hash":
                    values = [x for kv in plain.hgetall(key).items() for x in kv]
                elif kind == "zset":
                    values = list(plain.zrange(key, 0, -1))
                elif kind == "set":
                    values = list(plain.smembers(key))
                if needle in key or any(needle in v for v in values):
                    found.append(f"{key!r}: {values!r:.200}")
        finally:
            plain.close()
    return found
