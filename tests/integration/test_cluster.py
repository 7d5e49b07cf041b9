"""The pipeline on a real 3-master Redis Cluster (loopback, started once for this module).

A worker subprocess gets ``ENGAGEMENT_REDIS_URL=redis+cluster://127.0.0.1:PORT`` (one seed
node; the client discovers the others). It scores a few hundred events over many customers,
NPS answers and awkward customer ids (braces, ``%``) included, plus customers silent for 40
days whose decay crossings the sweep must fire by itself. The stored states must equal the
offline fold through ``scoring.apply`` (settled to one horizon with ``scoring.advance``),
the keys must spread over the three masters, and the NPS counters, due index, published
changes (event and decay) and the ``score`` command must work.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from redis.asyncio.cluster import RedisCluster

from scoring import Change, CustomerState, Model, advance, load_default_model
from stream_app.devkit.stack import LocalService, redis_cluster_url
from stream_app.store import tiercounts
from stream_app.store.guard import require_noeviction
from stream_app.store.keys import Keys, slot_of
from stream_app.store.state import connect
from stream_app.store.tiercounts import read_tier_counts
from tests.integration.scaleout import AWKWARD_IDS, Store, customer_ids, expected_nps, workload
from tests.integration.workers import (
    DAY_MS,
    REPO,
    Worker,
    event,
    now_ms,
    start_worker,
)
from tests.support.diff import state_diffs
from tests.support.fold import fold
from tests.support.kafka import in_offset_order, last_sent

pytestmark = pytest.mark.integration


def test_cluster_helper_gives_three_masters_covering_all_slots(
    redis_cluster: list[LocalService],
) -> None:
    url = redis_cluster_url(redis_cluster)
    assert url == f"redis+cluster://127.0.0.1:{redis_cluster[0].port}"
    client = redis.Redis(port=redis_cluster[0].port)
    try:
        slots = client.cluster("SLOTS")
    finally:
        client.close()
    owners = {int(s[2][1]) for s in slots}  # type: ignore[union-attr]
    assert owners == {n.port for n in redis_cluster}
    assert sum(int(s[1]) - int(s[0]) + 1 for s in slots) == 16384  # type: ignore[union-attr]


def _cooling_customers(n: int, end_ms: int) -> list[dict[str, Any]]:
    """``n`` customers warm 40 days ago and silent since: by now decay has taken them back to
    cold and into "lapsing", crossings the worker's decay sweep must fire by itself."""
    docs = []
    for i in range(n):
        t0 = end_ms - 40 * DAY_MS + i * 60_000
        for j, kind in enumerate(["webinar_attended", "webinar_attended", "review_submitted"]):
            docs.append(event(f"cool-{i}-{j}", f"cooling-{i}", kind, t0 + j * 1000))
    return docs


def test_pipeline_on_redis_cluster(
    tansu: LocalService,
    redis_cluster: list[LocalService],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model = load_default_model()
    url = redis_cluster_url(redis_cluster)
    workdir = tmp_path_factory.mktemp("cluster-worker")
    end = now_ms() - 60_000
    cooling = _cooling_customers(6, end)
    docs = cooling + workload(seed=11, customers=120, events=420, end_ms=end)
    ids = customer_ids(docs)
    # ``redis_server`` of the helper only seeds its plain client; the worker gets the cluster URL.
    worker = start_worker(
        tansu, redis_cluster[0], workdir, name="cluster", partitions=4, ENGAGEMENT_REDIS_URL=url
    )
    client = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster[0].port)
    try:
        store = Store(client, Keys(worker.settings.key_prefix, model.name))
        sent = worker.produce_events(docs)  # all in the topic before the worker has joined
        expected = fold(in_offset_order(docs, sent), model)
        last = last_sent(docs, sent)
        worker.wait(lambda: not store.unprocessed(last), timeout=60, what="every event applied")

        # The decay sweep (due index, fenced write, reschedule script) on the cluster.
        cooled = customer_ids(cooling)

        def swept() -> bool:
            states = store.states(cooled, model)
            return all(s is not None and s.clock_ms > s.last_event_ms for s in states.values())

        worker.wait(swept, timeout=30, what="the decay sweep to fire the due crossings")
        horizon = now_ms()
        decay_changes = [
            c
            for cid in cooled
            for c in advance(expected[cid].state, cid, horizon, model)[1]  # type: ignore[arg-type]
        ]
        assert {(c.cause, c.name) for c in decay_changes} >= {
            ("decay", "cold"),
            ("decay", "lapsing"),
        }

        diffs = state_diffs(
            store.states(ids, model),
            {c: expected[c].state for c in ids},
            model,
            horizon_ms=horizon,
        )
        assert not diffs, f"{len(diffs)} customers differ from the offline fold: {diffs}"
        assert store.nps_counts() == expected_nps(expected)
        assert sum(len(f.nps) for f in expected.values()) > 30

        _check_spread(redis_cluster, worker)
        _check_tier_counts(url, store.keys, store.states(ids, model), model)
        event_changes = [c for f in expected.values() for c in f.changes]
        _check_changes_published(worker, event_changes + decay_changes)
        _check_score_command(worker, AWKWARD_IDS[0], expected[AWKWARD_IDS[0]].state)
        assert "Traceback" not in worker.log_tail(200_000)
    finally:
        client.close()
        worker.stop()


def _check_spread(nodes: list[LocalService], worker: Worker) -> None:
    """Every master holds customer records; the due index and NPS counters exist."""
    prefix = worker.settings.key_prefix
    per_node: dict[int, Counter[str]] = {}
    for node in nodes:
        plain = redis.Redis(port=node.port)
        try:
            kinds: Counter[str] = Counter()
            for key in plain.scan_iter(match=f"{prefix}:*", count=1000):
                kinds[key.decode().split(":")[2]] += 1
            per_node[node.port] = kinds
        finally:
            plain.close()
    assert all(k["state"] > 10 for k in per_node.values()), per_node
    total = sum(per_node.values(), Counter())
    assert total["due"] >= 1 and total["nps"] >= 1 and total["nps-sources"] == 1, total


def _check_tier_counts(
    url: str, keys: Keys, states: dict[str, CustomerState | None], model: Model, distinct: int = 2
) -> None:
    """The per-slot tier counts, summed as ``/v1/tiers`` sums them, match the records."""
    tiers = [t.name for t in model.tiers]

    async def read() -> list[int]:
        client = connect(url)
        assert isinstance(client, RedisCluster)
        try:
            return await read_tier_counts(client, keys, tiers)
        finally:
            await client.aclose()

    stored = Counter(model.tiers[s.tier].name for s in states.values() if s is not None)
    assert len(stored) >= distinct, stored
    assert dict(zip(tiers, asyncio.run(read()), strict=True)) == {t: stored[t] for t in tiers}


def _check_changes_published(worker: Worker, changes: list[Change]) -> None:
    """Every change the fold and the decay imply is on the output topic, with its id."""
    wanted = {c.change_id for c in changes}
    assert wanted, "the workload should move some customers between tiers or segments"
    got = worker.read(
        worker.settings.output_topic,
        lambda msgs: wanted <= {json.loads(m.value)["id"] for m in msgs},
        what="every expected segment change",
    )
    assert all(m.key == json.loads(m.value)["subject"].encode() for m in got)


def _check_score_command(worker: Worker, customer_id: str, state: CustomerState | None) -> None:
    """``engagement-scorer score`` reads a customer (an id with braces) from the cluster."""
    done = subprocess.run(
        [sys.executable, "-m", "stream_app.cli", "score", customer_id],
        env=worker.env,
        cwd=Path(REPO),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["customer_id"] == customer_id
    assert state is not None and out["events_applied"] == state.events_applied


def test_tier_counts_cost_one_call_per_primary_and_noeviction_is_checked_on_each(
    redis_cluster: list[LocalService],
) -> None:
    """/v1/tiers read 16,384 hashes, one HMGET each, per request; now one script call per
    primary sums its slots where they are. The same totals as slot by slot."""
    keys = Keys("tier-sum", "default")
    tiers = ["cold", "warm", "hot"]
    plain = [redis.Redis(port=n.port) for n in redis_cluster]

    def evals() -> list[int]:
        return [int(c.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)) for c in plain]

    async def main() -> tuple[list[int], list[int], list[int]]:
        client = connect(redis_cluster_url(redis_cluster))
        assert isinstance(client, RedisCluster)
        try:
            for i in range(300):
                slot = slot_of(keys.state(f"c{i}"))
                await client.hincrby(keys.tier_counts(slot), tiers[i % 3], 1)
            before = evals()
            summed = await read_tier_counts(client, keys, tiers)
            calls = [a - b for a, b in zip(evals(), before, strict=True)]
            await require_noeviction(client)  # every primary: noeviction (the default)
            return summed, await tiercounts._summed_per_slot(client, keys, tiers), calls
        finally:
            await client.aclose()

    try:
        summed, per_slot, calls = asyncio.run(main())
    finally:
        for c in plain:
            c.close()
    assert summed == per_slot == [100, 100, 100]
    assert calls == [1, 1, 1]
