"""How many customers stand in each tier: counters kept with the records they count.

``lua/cas_write.lua`` moves a customer between the counts of ``tier-counts`` in the
same script call that writes its record, and only when that write wins its fence;
so the counts are exact, whatever crashes, redeliveries and rebalances happen, and
they cost no memory per customer.

On Redis Cluster a script sees one slot, so there is one counts hash per slot
(:meth:`stream_app.store.keys.Keys.tier_counts`), summed when read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from stream_app.store.keys import Keys
from stream_app.store.state import RedisClient, lua_source

log = logging.getLogger("stream_app.store.tiercounts")

_SUM = lua_source("tier_counts_sum.lua")


async def read_tier_counts(client: RedisClient, keys: Keys, tiers: Sequence[str]) -> list[int]:
    """The customers in each of ``tiers`` now: one ``HMGET`` on a single Redis; on a
    cluster one script call per primary (``lua/tier_counts_sum.lua``), which sums that
    node's slots where they are, and only should that fail (a slot moving during a
    resharding) one ``HMGET`` per slot (16,384)."""
    if not isinstance(client, RedisCluster):
        raw = await client.hmget(keys.tier_counts(), list(tiers))
        return [int(v or 0) for v in raw]
    try:
        return await _summed_per_node(client, keys, tiers)
    except redis.exceptions.ResponseError as exc:
        log.info("tier counts read slot by slot (%s)", exc)
    return await _summed_per_slot(client, keys, tiers)


async def _summed_per_node(client: RedisCluster, keys: Keys, tiers: Sequence[str]) -> list[int]:
    """One ``tier_counts_sum.lua`` per primary, over the slots it serves (in parallel)."""
    await client.initialize()
    by_node: dict[str, list[str]] = {}
    nodes = {}
    for slot in range(REDIS_CLUSTER_HASH_SLOTS):
        node = client.nodes_manager.get_node_from_slot(slot)
        nodes[node.name] = node
        by_node.setdefault(node.name, []).append(keys.tier_counts(slot))
    rows = await asyncio.gather(
        *(
            client.execute_command(
                "EVAL", _SUM, 0, len(names), *names, *tiers, target_nodes=nodes[name]
            )
            for name, names in by_node.items()
        )
    )
    return [sum(int(row[i]) for row in rows) for i in range(len(tiers))]


async def _summed_per_slot(client: RedisCluster, keys: Keys, tiers: Sequence[str]) -> list[int]:
    pipe = client.pipeline()
    for slot in range(REDIS_CLUSTER_HASH_SLOTS):
        pipe.hmget(keys.tier_counts(slot), list(tiers))
    totals = [0] * len(tiers)
    for row in cast(list[list[Any]], await pipe.execute()):
        for i, v in enumerate(row):
            totals[i] += int(v or 0)
    return totals
