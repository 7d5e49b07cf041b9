"""Redis memory per customer after a worker pass (INFO delta and MEMORY USAGE samples)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from e2e.bench import Bench, percentile
from e2e.workers import worker_pass
from e2e.workload import Workload


async def redis_client(bench: Bench) -> Any:
    import redis.asyncio as aioredis

    return aioredis.from_url(bench.redis_url)


async def used_memory(bench: Bench) -> int:
    client = await redis_client(bench)
    try:
        return int((await client.info("memory"))["used_memory"])
    finally:
        await client.aclose()


async def flush(bench: Bench) -> None:
    client = await redis_client(bench)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def memory_report(
    bench: Bench, prefix: str, workload: Workload, before: int, after: int
) -> dict[str, Any]:
    """Bytes per customer: the INFO delta over customers, and MEMORY USAGE of sampled keys."""
    from scoring import load_default_model
    from stream_app.store.keys import Keys
    from stream_app.store.records import decode_record

    keys = Keys(prefix, load_default_model().name)
    client = await redis_client(bench)
    try:
        states = 0
        async for _ in client.scan_iter(match=f"{keys.base}:state:*", count=2000):
            states += 1
        index = 0
        patterns = ("tier-counts*", "segment:*", "due:*", "tier-moves:*", "nps:*", "nps-sources")
        for pattern in patterns:
            async for key in client.scan_iter(match=f"{keys.base}:{pattern}", count=1000):
                index += int(await client.memory_usage(key, samples=0) or 0)
        rng = random.Random(f"bench-memory:{bench.cfg.seed}")
        seen = sorted(workload.per_customer)
        sample = rng.sample(seen, min(500, len(seen)))
        pipe = client.pipeline(transaction=False)
        for cid in sample:
            pipe.memory_usage(keys.state(cid), samples=0)
            pipe.get(keys.state(cid))
        raw = await pipe.execute()
    finally:
        await client.aclose()
    state_b = [int(x or 0) for x in raw[0::2]]
    records = [decode_record(x) for x in raw[1::2] if x is not None]
    value_b = [len(x) for x in raw[1::2] if x is not None]
    explain_b = [len(r.explain or b"") for r in records]
    state_only_b = [len(r.state or b"") for r in records]
    customers = len(workload.per_customer)
    counts = sorted(workload.per_customer.values())
    return {
        "customers": customers,
        "state_keys": states,
        "used_memory_delta": after - before,
        "bytes_per_customer": (after - before) / customers,
        "state_key_bytes": _dist(state_b),
        "record_value_bytes": _dist(value_b),
        "state_bytes_in_record": _dist(state_only_b),
        "explain_bytes_in_record": _dist(explain_b),
        "index_bytes_per_customer": index / max(1, states),
        "events_per_customer": {
            "p50": percentile(counts, 0.5),
            "p90": percentile(counts, 0.9),
            "max": counts[-1],
        },
    }


def _dist(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "mean": sum(values) / len(values),
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "max": max(values),
    }


async def worker_with_memory(
    bench: Bench, run: str, workload: Workload, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """A one-worker pass on an empty Redis, then its memory (measured after it stopped)."""
    await flush(bench)
    before = await used_memory(bench)
    result = await worker_pass(bench, run, 1, extra=extra)
    after = await used_memory(bench)
    result["memory"] = await memory_report(bench, result["key_prefix"], workload, before, after)
    return result
