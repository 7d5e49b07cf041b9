"""Readiness checks and the gauges refreshed before ``/metrics`` renders."""

from __future__ import annotations

import time
from typing import Any

from stream_app.settings import Settings
from stream_app.worker.runtime import Runtime, next_offset


async def consumer_lag(app: Any, runtime: Runtime, settings: Settings) -> dict[str, int]:
    """Per owned source partition: high watermark minus the next offset to process."""
    from faust.types import TP

    processor = await runtime.processor()
    lag: dict[str, int] = {}
    for tp in sorted(app.consumer.assignment()):
        if tp.topic not in (settings.input_topic, settings.by_customer_topic):
            continue
        high = app.consumer.highwater(TP(tp.topic, tp.partition))
        if high is not None:
            nxt = next_offset(app, processor, tp.topic, tp.partition)
            lag[f"{tp.topic}:{tp.partition}"] = max(0, int(high) - nxt)
    return lag


async def readiness(app: Any, runtime: Runtime, settings: Settings) -> tuple[bool, dict[str, Any]]:
    """Broker and Redis reachable, partitions assigned, lag below the threshold."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        await runtime.processor()
        assert runtime.store is not None  # (built with the processor)
        began = time.perf_counter()
        await runtime.store.client.ping()
        rtt = time.perf_counter() - began
        runtime.metrics.redis_seconds.observe(rtt)
        checks["redis"] = {"ok": True, "rtt_ms": round(rtt * 1000, 3)}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as such
        ready = False
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
    try:
        assigned = [tp for tp in app.consumer.assignment()]
        checks["partitions"] = {"ok": bool(assigned), "assigned": len(assigned)}
        ready &= bool(assigned)
        lag = await consumer_lag(app, runtime, settings)
        total = sum(lag.values())
        checks["lag"] = {"ok": total <= settings.ready_max_lag, "messages": total}
        ready &= total <= settings.ready_max_lag
        checks["broker"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - the consumer is not up: not ready
        ready = False
        checks["broker"] = {"ok": False, "error": type(exc).__name__}
    return ready, checks


async def refresh_gauges(app: Any, runtime: Runtime, settings: Settings) -> None:
    """Set the per-partition gauges (event time, lag, due-index size) before a scrape."""
    m = runtime.metrics
    processor = await runtime.processor()
    now = time.time()
    for partition, ts in processor.event_time.items():
        m.event_time.set(ts / 1000.0, partition=str(partition))
        m.event_time_lag.set(max(0.0, now - ts / 1000.0), partition=str(partition))
    owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.input_topic}
    assert runtime.store is not None  # (built with the processor)
    for partition in sorted(owned):
        m.due_size.set(await runtime.store.due_size(partition), partition=str(partition))
    for name, lag in (await consumer_lag(app, runtime, settings)).items():
        topic, part = name.rsplit(":", 1)
        m.consumer_lag.set(lag, topic=topic, partition=part)
