"""Redis memory per customer after a worker pass (INFO delta and MEMORY USAGE samples)."""

from __future__ import annotations

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
    """Bytes per customer: the INFO delta over customers, MEMORY USAGE of every key (by
    kind), and what the customers' records hold (``by_what``)."""
    from scoring import decode_state, load_default_model
    from stream_app.store.keys import Keys

    model = load_default_model()
    keys = Keys(prefix, model.name)
    client = await redis_client(bench)
    try:
        sizes = await _usage_of_every_key(client)
        sample = [keys.state(cid) for cid in sorted(workload.per_customer)]
        raws: list[bytes | None] = []
        for i in range(0, len(sample), 2000):
            raws += await client.mget(sample[i : i + 2000])
    finally:
        await client.aclose()
    state_marker = f"{keys.base}:state:".encode()
    index_marks = [f"{keys.base}:{p}".encode() for p in _INDEX]
    record_b = [n for k, n in sizes.items() if k.startswith(state_marker)]
    index = sum(n for k, n in sizes.items() if k.startswith(tuple(index_marks)))
    others = sum(sizes.values()) - sum(record_b) - index
    parts = [_parts(raw, decode_state, model) for raw in raws if raw is not None]
    customers = len(workload.per_customer)
    counts = sorted(workload.per_customer.values())
    per = 1 / max(1, customers)
    by_what = {
        "record_key_overhead": (sum(record_b) - sum(len(r) for r in raws if r)) * per,
        "record_header": sum(p[0] for p in parts) * per,
        "state": sum(p[1] for p in parts) * per,
        "state_dedup_ids": sum(p[2] for p in parts) * per,
        "explanation": sum(p[3] for p in parts) * per,
        "explanation_ids": sum(p[4] for p in parts) * per,
        "index_keys": index * per,
        "other_keys": others * per,
        "unaccounted": (after - before - sum(sizes.values())) * per,
    }
    return {
        "customers": customers,
        "state_keys": len(record_b),
        "used_memory_delta": after - before,
        "bytes_per_customer": (after - before) / customers,
        "by_what": by_what,
        "state_key_bytes": _dist(record_b),
        "record_value_bytes": _dist([len(r) for r in raws if r is not None]),
        "state_bytes_in_record": _dist([p[1] for p in parts]),
        "explain_bytes_in_record": _dist([p[3] for p in parts]),
        "index_bytes_per_customer": index / max(1, len(record_b)),
        "events_per_customer": {
            "p50": percentile(counts, 0.5),
            "p90": percentile(counts, 0.9),
            "max": counts[-1],
        },
    }


#: Index keys (after ``<prefix>:<model>:``): tier counts, segment sets, due index, NPS.
_INDEX = ("tier-counts", "segment:", "due:", "tier-moves:", "nps:", "nps-sources")


async def _usage_of_every_key(client: Any) -> dict[bytes, int]:
    """``MEMORY USAGE key SAMPLES 0`` of every key in the database (flushed before the pass)."""
    names = [k async for k in client.scan_iter(count=2000)]
    sizes: dict[bytes, int] = {}
    for i in range(0, len(names), 2000):
        pipe = client.pipeline(transaction=False)
        for name in names[i : i + 2000]:
            pipe.memory_usage(name, samples=0)
        for name, n in zip(names[i : i + 2000], await pipe.execute(), strict=True):
            sizes[name] = int(n or 0)
    return sizes


def _parts(raw: bytes, decode_state: Any, model: Any) -> tuple[int, int, int, int, int]:
    """A record's header, state, the state's dedup fingerprints, explanation and the
    explanation's ids, in bytes."""
    from scoring import decode_explanation
    from scoring.codec.explain import FINGERPRINTS_FORMAT
    from scoring.state import FINGERPRINT_BYTES
    from stream_app.store.records import decode_record

    rec = decode_record(raw)
    state, explain = rec.state or b"", rec.explain or b""
    ids = len(decode_state(state, model).recent_ids) * FINGERPRINT_BYTES if state else 0
    expl_ids = 0
    if explain:
        recent = decode_explanation(explain, model).recent
        if explain[0] == FINGERPRINTS_FORMAT:
            expl_ids = FINGERPRINT_BYTES * len(recent)
        else:  # the ids and their lengths
            expl_ids = sum(len(r[3].encode()) + 1 for r in recent)
    return len(raw) - len(state) - len(explain), len(state), ids, len(explain), expl_ids


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
