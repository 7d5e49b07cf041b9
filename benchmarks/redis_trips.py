"""Where a batch's Redis time goes: round trips and commands per batch, by call site.

Not a test: runs the worker's real services (``build_services``: the model in force, its
record store, read indexes, lifecycle store) against a redis-server it starts on a free
loopback port, on the benchmark's throughput workload (``benchmarks/e2e/workload.py``),
without faust or a broker: messages go to the scorer in batches of ``--batch`` taken
partition by partition, as the worker takes them, and what it publishes is kept in
memory. Prints per batch: round trips to Redis (each pipeline or single command sent,
by the function of ``stream_app`` that sent it) with their mean wall time, the commands
Redis ran (``INFO commandstats``), and the time of each stage of the batch (``score``,
``read``, ``publish``, ``write``); then the process CPU per event.

    .venv/bin/python benchmarks/redis_trips.py
    .venv/bin/python benchmarks/redis_trips.py --events 50000 --customers 20000

The round trips are counted by wrapping redis-py's connection ``send_packed_command``
and ``read_response`` in this process only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import redis.asyncio.connection as rconn
from e2e.config import Config
from e2e.workload import throughput_workload

from stream_app.cli.start import model_registry
from stream_app.devkit.stack import start_redis
from stream_app.messages import OutMessage, Record, expected_partition
from stream_app.settings import Settings
from stream_app.worker.services import build_services

TRIPS: Counter[str] = Counter()
TRIP_S: defaultdict[str, float] = defaultdict(float)


def _site() -> str:
    """The innermost ``stream_app`` function on the stack (the one that sent)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("stream_app."):
            return f"{module.removeprefix('stream_app.')}.{frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


def _count_trips() -> None:
    send, read = (
        rconn.AbstractConnection.send_packed_command,
        rconn.AbstractConnection.read_response,
    )
    pending: dict[int, tuple[str, float]] = {}

    async def counted_send(self: Any, command: Any, check_health: bool = True) -> None:
        site = _site()
        TRIPS[site] += 1
        pending[id(self)] = (site, time.perf_counter())
        await send(self, command, check_health)

    async def timed_read(self: Any, *args: Any, **kw: Any) -> Any:
        reply = await read(self, *args, **kw)
        started = pending.pop(id(self), None)
        if started is not None:  # the first reply of the trip: its round-trip time
            TRIP_S[started[0]] += time.perf_counter() - started[1]
        return reply

    rconn.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
    rconn.AbstractConnection.read_response = timed_read  # type: ignore[method-assign]


class Kept:
    """A publisher that keeps nothing but a count."""

    def __init__(self) -> None:
        self.sent = 0

    async def publish(self, messages: list[OutMessage]) -> None:
        self.sent += len(messages)


class Owner:
    """A consumer that owns every partition."""

    def __init__(self, topics: tuple[str, str], partitions: int) -> None:
        self.pairs = [(t, p) for t in topics for p in range(partitions)]

    def assignment(self) -> list[tuple[str, int]]:
        return self.pairs

    def highwater(self, topic: str, partition: int, /) -> int | None:
        return None

    def committed(self, topic: str, partition: int, /) -> int | None:
        return None


def _batches(
    messages: list[tuple[bytes, bytes]], topic: str, parts: int, size: int
) -> list[list[Record]]:
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for key, value in messages:
        p = expected_partition(key.decode(), parts)
        by_partition[p].append(Record(topic, p, len(by_partition[p]), key, value))
    out: list[list[Record]] = []
    cursors = dict.fromkeys(by_partition, 0)
    while any(cursors[p] < len(by_partition[p]) for p in cursors):
        batch: list[Record] = []
        for p in sorted(by_partition):  # a fetch brings some of each partition
            take = by_partition[p][cursors[p] : cursors[p] + size // parts]
            cursors[p] += len(take)
            batch += take
        out.append(batch)
    return out


async def _run(url: str, args: argparse.Namespace) -> None:
    settings = Settings(redis_url=url, key_prefix="rt", redis_require_noeviction=False)
    registry = await model_registry(settings, args.partitions)
    services = build_services(
        settings,
        registry=registry,
        input_partitions=args.partitions,
        publisher=Kept(),  # type: ignore[arg-type]
        consumer=Owner((settings.input_topic, settings.by_customer_topic), args.partitions),  # type: ignore[arg-type]
    )
    cfg = Config(args.events, args.customers, args.partitions, 0.8, 7, 0, 0, 0, 0, False,
                 Path("/dev/null"), frozenset())  # fmt: skip
    now_ms = int(time.time() * 1000)
    work = throughput_workload(cfg, now_ms)
    batches = _batches(work.messages, settings.input_topic, args.partitions, args.batch)
    client = services.redis
    await services.conductor.refresh()
    await services.conductor.ensure(range(args.partitions))
    warm = batches[: len(batches) // 10]
    for b in warm:
        await services.conductor.process(b)
    await client.config_resetstat()
    TRIPS.clear()
    TRIP_S.clear()
    stages: Counter[str] = Counter()
    events = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for b in batches[len(warm) :]:
        stats = await services.conductor.process(b)
        events += len(b)
        for k, v in stats.seconds.items():
            stages[k] += v
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    n = len(batches) - len(warm)
    info = await client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}
    calls.pop("config|resetstat", None)
    await client.aclose()
    print(f"{n} batches of {events / n:.0f} events (after {len(warm)} to warm up)")
    print(f"process CPU {1e6 * cpu / events:.1f} us/event, wall {1e6 * wall / events:.1f} us/event")
    print("stages, ms per batch: " + ", ".join(f"{k} {1e3 * v / n:.2f}" for k, v in stages.items()))
    print("round trips per batch, by sender (mean ms each):")
    for site, count in TRIPS.most_common():
        print(f"  {count / n:6.2f}  {site}  ({1e3 * TRIP_S[site] / max(1, count):.2f} ms)")
    print(f"  {sum(TRIPS.values()) / n:6.2f}  in all")
    print(
        "commands per batch: "
        + ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(calls.items()) if k != "info")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--batch", type=int, default=500)
    args = p.parse_args()
    _count_trips()
    with tempfile.TemporaryDirectory(prefix="redis-trips-") as tmp:
        redis = start_redis(data_dir=Path(tmp))
        try:
            asyncio.run(_run(redis.url, args))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
