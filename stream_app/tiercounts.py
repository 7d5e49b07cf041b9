"""How many customers stand in each tier: counters kept with the records they count.

``lua/cas_write.lua`` moves a customer between the counts of ``tier-counts`` in the
same script call that writes its record, and only when that write wins its fence;
so the counts are exact, whatever crashes, redeliveries and rebalances happen, and
they cost no memory per customer (release 0.1 kept a sorted set per tier, ~112 B
per customer, read only for its size).

On Redis Cluster a script sees one slot, so there is one counts hash per slot
(:meth:`stream_app.keys.Keys.tier_counts`), summed when read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from .keys import Keys, slot_of
from .store import RedisClient, lua_source

log = logging.getLogger("stream_app.tiercounts")

_MIGRATE = lua_source("tier_sets_migrate.lua")
_LOCK_S = 600  # cluster migration: how long other workers keep off


async def read_tier_counts(client: RedisClient, keys: Keys, tiers: Sequence[str]) -> list[int]:
    """The customers in each of ``tiers`` now (one round trip; per slot on a cluster)."""
    if not isinstance(client, RedisCluster):
        raw = await client.hmget(keys.tier_counts(), list(tiers))
        return [int(v or 0) for v in raw]
    pipe = client.pipeline()
    for slot in range(REDIS_CLUSTER_HASH_SLOTS):
        pipe.hmget(keys.tier_counts(slot), list(tiers))
    totals = [0] * len(tiers)
    for row in cast(list[list[Any]], await pipe.execute()):
        for i, v in enumerate(row):
            totals[i] += int(v or 0)
    return totals


async def migrate_tier_sets(client: RedisClient, keys: Keys, tiers: Sequence[str]) -> int:
    """Fold release 0.1's tier sorted sets into the counts and delete them; customers moved.

    Idempotent, run by every worker at start. On a single Redis one script does it, so
    two workers starting together cannot both count a set. On Redis Cluster the members
    are counted by slot under a lock key; a worker dying in the middle of that leaves
    the counts too high (docs/operations.md, "Upgrading from 0.1").
    """
    legacy = [keys.legacy_tier_members(t) for t in tiers]
    if not isinstance(client, RedisCluster):
        counts = keys.tier_counts()
        moved = int(await client.eval(_MIGRATE, len(legacy) + 1, counts, *legacy, *tiers))
        _report(moved)
        return moved
    present = [(t, k) for t, k in zip(tiers, legacy, strict=True) if await client.exists(k)]
    lock = keys.tier_migration()
    if not present or not await client.set(lock, 1, nx=True, ex=_LOCK_S):
        return 0
    moved = 0
    for tier, key in present:
        by_slot: dict[int, int] = {}
        async for member in client.zscan_iter(key, count=1000):
            slot = slot_of(keys.state(cast(tuple[bytes, float], member)[0].decode()))
            by_slot[slot] = by_slot.get(slot, 0) + 1
        pipe = client.pipeline()
        for slot, n in by_slot.items():
            pipe.hincrby(keys.tier_counts(slot), tier, n)
        await pipe.execute()
        await client.unlink(key)
        moved += sum(by_slot.values())
    _report(moved)
    return moved


def _report(moved: int) -> None:
    if moved:
        log.info("tier sets of release 0.1 folded into tier counts: %d customers", moved)
