"""Micro-benchmark of the worker's Redis path: one batch's load and commit, nothing else.

Not a test: starts its own redis-server on a free loopback port (in a temporary
directory, stopped by pid at the end), then runs ``--batches`` rounds of what the
worker does per batch against it with :class:`~stream_app.store.state.StateStore`:
one ``load`` of ``--customers`` records, then one ``commit`` of a fenced write of
each (new record, due entry, tier move). Records are the size of the benchmark's
typical customer (``--state`` and ``--explain`` bytes). Prints the process CPU and
wall time per batch and per customer, the commands Redis ran per batch (``INFO
commandstats``), and the record's size.

    .venv/bin/python benchmarks/store_micro.py
    .venv/bin/python benchmarks/store_micro.py --customers 300 --batches 400

Compare two versions of the store in one sitting, alternating runs: the machine's
speed drifts, and the figure of one run says little on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from stream_app.devkit.stack import start_redis
from stream_app.store.keys import Keys
from stream_app.store.records import Write, encode_record
from stream_app.store.state import StateStore, connect


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--customers", type=int, default=250, help="customers per batch")
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--population", type=int, default=20_000, help="customers drawn from")
    p.add_argument("--state", type=int, default=52, help="state bytes per record")
    p.add_argument("--explain", type=int, default=80, help="explanation bytes per record")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


async def _run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    client = connect(url)
    store = StateStore(client, Keys("sm", "default"))
    await store.load_scripts()
    rng = random.Random(args.seed)
    state = bytes([3]) + rng.randbytes(args.state - 1)
    explain = bytes([3]) + rng.randbytes(args.explain - 1) if args.explain else None
    tiers = ("cold", "warm", "hot")
    cpu = wall = 0.0
    await client.config_resetstat()
    for b in range(args.batches):
        cids = list({f"cust-{rng.randrange(args.population):06d}" for _ in range(args.customers)})
        t0, c0 = time.perf_counter(), time.process_time()
        stored = await store.load(cids)
        writes = [
            Write(
                cid,
                rec.version,
                {**rec.marks, "i3": b * 1000 + i},
                state,
                due_partition=3,
                due_at_ms=1.7e12 + rng.randrange(10**9),
                explain=explain,
                tier_move=(tiers[rec.version % 3] if rec.version else "", tiers[b % 3]),
                read_token=rec.fence,
            )
            for i, (cid, rec) in enumerate(stored.items())
        ]
        lost = await store.commit(writes, index=[("SADD", "sm:default:segment:x", *cids[:5])])
        cpu += time.process_time() - c0
        wall += time.perf_counter() - t0
        if lost:
            raise SystemExit(f"{len(lost)} writes lost: nothing else writes here")
    stats = await client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)
    sample = await client.get(store.keys.state(cids[0]))
    await client.aclose()
    n = args.batches * args.customers
    return {
        "cpu_ms_per_batch": 1e3 * cpu / args.batches,
        "wall_ms_per_batch": 1e3 * wall / args.batches,
        "cpu_us_per_customer": 1e6 * cpu / n,
        "commands_per_batch": {k: round(v / args.batches, 2) for k, v in sorted(calls.items())},
        "record_bytes": len(sample or b""),
        "header_bytes": len(sample or b"") - args.state - args.explain,
        "example_header": encode_record(7, {"i3": 123456}, b"", None, token="7.x")[:40],
    }


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory(prefix="store-micro-") as tmp:
        redis = start_redis(data_dir=Path(tmp))
        try:
            result = asyncio.run(_run(redis.url, args))
        finally:
            redis.stop()
    for key, value in result.items():
        print(f"{key:24} {value}")


if __name__ == "__main__":
    main()
