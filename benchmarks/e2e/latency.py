"""The latency phase: steady traffic, production of an event -> its change on the output
topic."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from e2e.bench import (
    Bench,
    PhaseError,
    check_alive,
    launch_workers,
    log_tail,
    percentile,
    scrape_once,
    stage_totals,
)
from e2e.cpu import loadavg
from e2e.workload import LatencyTraffic
from stream_app.kafka.topics import TopicSpec, ensure_topics

#: The latency phase is cut into slices this long (by send time), with a p99 each: their
#: spread tells a steady tail from a few bad seconds.
LATENCY_SLICE_S = 10.0


def sliced_p99(samples: Sequence[tuple[float, float]], t0: float, slice_s: float) -> list[float]:
    """p99 of the values of ``(send time, value)`` samples per ``slice_s`` from ``t0``
    (the last slice, if shorter than half a slice, joins the one before)."""
    slices: dict[int, list[float]] = {}
    for at, value in samples:
        slices.setdefault(max(int((at - t0) // slice_s), 0), []).append(value)
    if len(slices) > 1:
        last = max(slices)
        if max(at for at, _ in samples) - t0 - last * slice_s < slice_s / 2:
            slices[last - 1] += slices.pop(last)
    return [percentile(v, 0.99) for _, v in sorted(slices.items())]


async def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PhaseError(f"worker exited ({proc.returncode}):\n{log_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise PhaseError(f"worker not ready in {timeout:g} s:\n{log_tail(log)}")


@dataclass
class Arrivals:
    """Segment changes read from the output topic: (receive time, create time, cause id)."""

    items: list[tuple[float, float, str | None]] = field(default_factory=list)


async def read_changes(bootstrap: str, topic: str, into: Arrivals, ready: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=10,
    )  # fmt: skip
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        await consumer.seek_to_beginning()
        ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for messages in batches.values():
                for m in messages:
                    data = orjson.loads(m.value)["data"]
                    into.items.append((now, m.timestamp / 1000.0, data.get("cause_event_id")))
    finally:
        await consumer.stop()


async def paced_send(
    producer: Any, topic: str, traffic: LatencyTraffic, *, rate: float, seconds: float, prefix: str
) -> dict[str, float]:
    """Send at ``rate`` events/s for ``seconds``; event id -> wall-clock time of its send."""
    sent: dict[str, float] = {}
    futures = []
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) - len(sent)
        for _ in range(due):
            event_id, key, value = traffic.next(prefix)
            sent[event_id] = time.time()
            futures.append(await producer.send(topic, value, key=key))
        await asyncio.sleep(0.002)
    await asyncio.gather(*futures)
    return sent


async def warm_up(
    producer: Any, topic: str, traffic: LatencyTraffic, arrivals: Arrivals, *, rate: float
) -> None:
    """Send at ``rate`` for 2 s, then on in 1 s steps until a change of the last step's
    events has arrived: the worker owns its partitions and keeps up (a worker is ready
    before its group has assigned it anything), so the measured traffic starts on a
    flowing worker. At most 30 s more."""
    await paced_send(producer, topic, traffic, rate=rate, seconds=2.0, prefix="warm")
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        step = await paced_send(producer, topic, traffic, rate=rate, seconds=1.0, prefix="warm")
        if any(cause in step for _, _, cause in arrivals.items[-2000:]):
            return
    raise PhaseError("the worker produced no change for the warm-up traffic in 30 s")


async def latency(bench: Bench) -> dict[str, Any]:
    """Steady traffic over few customers; production -> segment change on the output topic."""
    from aiokafka import AIOKafkaProducer

    cfg = bench.cfg
    topic = f"bench-latency-in-{uuid.uuid4().hex[:6]}"
    await ensure_topics(bench.bootstrap, [TopicSpec(topic, cfg.partitions)])
    (w,) = launch_workers(bench, "latency", 1, {"ENGAGEMENT_INPUT_TOPIC": topic})
    launched = time.time()
    traffic = LatencyTraffic(cfg.latency_customers, cfg.seed)
    arrivals = Arrivals()
    # a producer as applications run one: 5 ms linger (counted in the latency), acks=1
    producer = AIOKafkaProducer(bootstrap_servers=bench.bootstrap, linger_ms=5)
    reader: asyncio.Task[None] | None = None
    counters: dict[str, float] | None = None
    try:
        await wait_ready(w.port, w.proc, w.log, 60.0)
        ready_s = time.time() - launched
        out_topic = w.env["ENGAGEMENT_OUTPUT_TOPIC"]
        subscribed = asyncio.Event()
        reader = asyncio.create_task(read_changes(bench.bootstrap, out_topic, arrivals, subscribed))
        await asyncio.wait_for(subscribed.wait(), 30)
        await producer.start()
        await warm_up(producer, topic, traffic, arrivals, rate=cfg.latency_rate)
        t0 = time.time()
        sent = await paced_send(
            producer,
            topic,
            traffic,
            rate=cfg.latency_rate,
            seconds=cfg.latency_seconds,
            prefix="lat",
        )
        t1 = time.time()
        await _settle(arrivals, quiet=3.0, limit=15.0)
        check_alive([w])
        counters = await scrape_once(w.port)
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await producer.stop()
        bench.procs.stop(w.proc)
        bench.sampler.unwatch(w.name)
    result = _latency_result(bench, sent, arrivals, (t0, t1), ready_s)
    if counters and counters.get("batch_size_count"):
        n = counters["batch_size_count"]
        result["batches"] = {  # the whole run, warm-up included
            "count": n,
            "mean_size": counters["batch_size_sum"] / n,
            "mean_ms": counters["batch_processing_seconds_sum"] / n * 1000,
            **{f"{k}_ms": v / n * 1000 for k, v in stage_totals(counters).items()},
        }
        if counters.get("event_age_seconds_count"):
            result["batches"]["mean_event_age_at_start_ms"] = (
                counters["event_age_seconds_sum"] / counters["event_age_seconds_count"] * 1000
            )
    return result


async def _settle(arrivals: Arrivals, quiet: float, limit: float) -> None:
    """Wait until no change arrived for ``quiet`` s (at most ``limit`` s)."""
    deadline = time.monotonic() + limit
    seen, since = len(arrivals.items), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if len(arrivals.items) != seen:
            seen, since = len(arrivals.items), time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def _latency_result(
    bench: Bench,
    sent: dict[str, float],
    arrivals: Arrivals,
    window: tuple[float, float],
    ready: float,
) -> dict[str, Any]:
    first: dict[str, tuple[float, float]] = {}
    for recv, created, cause in arrivals.items:
        if cause in sent and cause not in first:
            first[cause] = (recv, created)
    recv_ms = [(r - sent[e]) * 1000 for e, (r, _) in first.items()]
    create_ms = [(c - sent[e]) * 1000 for e, (_, c) in first.items()]
    t0, t1 = window
    cpu = bench.sampler.window(t0, t1, bench.cpu_names(["worker"]))
    out: dict[str, Any] = {
        "rate_target": bench.cfg.latency_rate,
        "rate_achieved": len(sent) / (t1 - t0),
        "seconds": t1 - t0,
        "events": len(sent),
        "events_with_change": len(first),
        "changes_received": len(arrivals.items),
        "ready_s": ready,
        "cpu_cores": cpu,
        "loadavg_end": loadavg(),
    }
    for name, values in (("to_consumer_ms", recv_ms), ("to_create_time_ms", create_ms)):
        if values:
            out[name] = {f"p{int(q * 100)}": percentile(values, q) for q in (0.5, 0.9, 0.99)}
            out[name]["max"] = max(values)
            out[name]["over_100ms_share"] = sum(v > 100.0 for v in values) / len(values)
            timed = list(zip([sent[e] for e in first], values, strict=True))
            out[name]["p99_by_slice"] = sliced_p99(timed, t0, LATENCY_SLICE_S)
    return out
