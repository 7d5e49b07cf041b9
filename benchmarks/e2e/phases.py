"""Setting a run up (services, topics, the produced workload) and running its phases."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from e2e.bench import Bench
from e2e.ceiling import STOCK_FAUST, ceiling
from e2e.cpu import loadavg
from e2e.latency import latency
from e2e.memory import flush, worker_with_memory
from e2e.profile import profile_pass
from e2e.quix import quix
from e2e.workers import worker_pass
from e2e.workload import Workload, produce, throughput_workload
from stream_app.devkit.stack import start_redis, start_tansu
from stream_app.kafka.topics import TopicSpec, ensure_topics


async def setup(bench: Bench) -> Workload:
    """Broker, Redis, the input topic and the pre-produced workload."""
    cfg = bench.cfg
    tansu = start_tansu(log_dir=bench.workdir)
    bench.procs.services.append(tansu)
    redis_svc = start_redis(data_dir=bench.workdir / "redis")
    bench.procs.services.append(redis_svc)
    bench.sampler.watch("broker", tansu.pid)
    bench.sampler.watch("redis", redis_svc.pid)
    bench.sampler.watch("bench", os.getpid())
    bench.bootstrap, bench.redis_url = tansu.url, redis_svc.url
    bench.input_topic = f"bench-input-{uuid.uuid4().hex[:6]}"
    specs = [TopicSpec(bench.input_topic, cfg.partitions)]
    specs.append(TopicSpec(f"{bench.input_topic}.by-customer", cfg.partitions))
    await ensure_topics(bench.bootstrap, specs)
    began = time.perf_counter()
    workload = throughput_workload(cfg, int(time.time() * 1000))
    generated = time.perf_counter() - began
    # every send is acknowledged (acks=all) or raises. (Tansu's ListOffsets answers the base
    # offset of the last batch, not the end offset: no use for counting what the topic holds.)
    produced = await produce(bench.bootstrap, bench.input_topic, workload.messages)
    bench.expect = len(workload.messages)
    sizes = [len(v) for _, v in workload.messages]
    bench.results["workload"] = {
        "events": cfg.events,
        "customers_drawn_from": cfg.customers,
        "customers_seen": len(workload.per_customer),
        "zipf_exponent": cfg.zipf,
        "busiest_customer_events": workload.per_customer.most_common(1)[0][1],
        "mean_message_bytes": sum(sizes) / len(sizes),
        "types": dict(workload.types.most_common()),
        "generate_s": generated,
        "produce_s": produced,
        "produce_events_per_s": cfg.events / produced,
        "services": {"tansu": tansu.argv[0], "broker_pid": tansu.pid, "redis_pid": redis_svc.pid},
        "worker_settings": _worker_settings(),
    }
    return workload


def _worker_settings() -> dict[str, Any]:
    """The settings (defaults) every worker and the faust ceiling run with."""
    from stream_app.settings import Settings

    d = Settings()
    names = ("batch_size", "batch_window_ms", "fetch_max_wait_ms", "dedup_memory", "explain_events")
    return {n: getattr(d, n) for n in names} | {"loop": "uvloop", "model": "default"}


async def phase(bench: Bench, name: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Run one measurement; a failure is recorded (and shown) and the next phase goes on."""
    print(f"-- {name}: running (load average {loadavg()[0]:.2f})", flush=True)
    began = time.monotonic()
    try:
        bench.results[name] = await run()
    except Exception as exc:  # noqa: BLE001 - recorded, shown, and the next phase runs
        bench.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    doc = bench.results[name]
    took = time.monotonic() - began
    if "error" in doc:
        print(f"-- {name}: FAILED after {took:.0f} s: {doc['error']}", flush=True)
    elif "events_per_s" in doc:
        print(f"-- {name}: {doc['events_per_s']:,.0f} events/s ({took:.0f} s)", flush=True)
    else:
        print(f"-- {name}: done ({took:.0f} s)", flush=True)


async def run(bench: Bench) -> None:
    workload = await setup(bench)
    w = bench.results["workload"]
    print(
        f"-- workload: {w['events']:,} events over {w['customers_seen']:,} customers "
        f"(zipf {w['zipf_exponent']}), produced at {w['produce_events_per_s']:,.0f}/s",
        flush=True,
    )
    skip = bench.cfg.skip
    if "ceilings" not in skip:
        await phase(bench, "ceiling_aiokafka", lambda: ceiling(bench, "aiokafka"))
        await phase(bench, "ceiling_faust", lambda: ceiling(bench, "faust"))
        await phase(bench, "ceiling_faust_stock", lambda: ceiling(bench, "faust", STOCK_FAUST))
    if "quix" not in skip:
        await phase(bench, "quix", lambda: quix(bench))
    if "worker" not in skip:
        await phase(bench, "worker", lambda: worker_with_memory(bench, "worker", workload))
    if "noexplain" not in skip:
        extra = {"ENGAGEMENT_EXPLAIN_EVENTS": "0"}
        await phase(bench, "worker_noexplain",
                    lambda: worker_with_memory(bench, "noexplain", workload, extra))  # fmt: skip
    if "scale" not in skip:
        await flush(bench)
        await phase(bench, "two_workers", lambda: worker_pass(bench, "scale", 2))
    if "latency" not in skip:
        await flush(bench)
        await phase(bench, "latency", lambda: latency(bench))
    if bench.cfg.profile:
        await phase(bench, "profile", lambda: profile_pass(bench))
