"""Start-up checks of the Redis the worker is about to trust with its state.

**Eviction.** Under any ``maxmemory-policy`` but ``noeviction`` (``allkeys-lru``,
``volatile-*``...) Redis silently deletes keys when it runs out of memory. For the
scorer that means customer records gone: their versions start again at 1 and their
source marks and dedup memory are lost, so redelivered events are counted again and
state is wrong with no error anywhere. Under ``noeviction`` Redis refuses writes
instead (``OOM``), which the worker waits out (a retry with cause ``oom``, visible in
``/readyz``, ``/healthz`` and the metrics) until memory is freed or added. So the worker
refuses to start unless every primary reports ``noeviction``
(``ENGAGEMENT_REDIS_REQUIRE_NOEVICTION=false`` skips the check, e.g. for tests). The
policy is read with ``INFO memory``: an ACL user needs ``+info``.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from stream_app.errors import StreamAppError
from stream_app.store.state import RedisClient


class UnsafeRedis(StreamAppError):
    """Redis is set up in a way that can lose the worker's state silently."""


async def eviction_policies(client: RedisClient) -> dict[str, str]:
    """``maxmemory_policy`` of every primary (one entry on a single Redis)."""
    if isinstance(client, RedisCluster):
        out: dict[str, str] = {}
        for node in client.get_primaries():
            info: dict[str, Any] = await client.info("memory", target_nodes=node)
            out[node.name] = str(info.get("maxmemory_policy", ""))
        return out
    single: dict[str, Any] = await client.info("memory")
    return {"redis": str(single.get("maxmemory_policy", ""))}


async def require_noeviction(client: RedisClient) -> None:
    """Raise :class:`UnsafeRedis` unless every primary's policy is ``noeviction``."""
    try:
        policies = await eviction_policies(client)
    except redis.exceptions.NoPermissionError as exc:
        raise UnsafeRedis(
            f"cannot read Redis's maxmemory-policy ({exc}): grant the worker's ACL user "
            "+info, or set ENGAGEMENT_REDIS_REQUIRE_NOEVICTION=false after checking it by hand"
        ) from None
    wrong = {node: p for node, p in policies.items() if p != "noeviction"}
    if wrong:
        shown = ", ".join(f"{node}: {p or 'unknown'}" for node, p in sorted(wrong.items()))
        raise UnsafeRedis(
            f"Redis maxmemory-policy must be noeviction, not {shown}: under an eviction "
            "policy Redis deletes customer records when memory runs out, silently. Set "
            "`maxmemory-policy noeviction` (the worker waits out OOM errors), or "
            "ENGAGEMENT_REDIS_REQUIRE_NOEVICTION=false to start anyway"
        )
