"""The worker phase: workers over the whole input topic, followed by their metrics until
they consumed it; events/s, CPU, startup and batch statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from e2e.bench import Bench, Launched, PhaseError, check_alive, launch_workers, scrape, stage_totals
from e2e.cpu import loadavg


@dataclass
class Timeline:
    """Scraped counters: (time, per worker counters) samples."""

    launched_at: float
    samples: list[tuple[float, list[dict[str, float]]]] = field(default_factory=list)

    def total(self, i: int, key: str = "consumed") -> float:
        return sum(c.get(key, 0.0) for c in self.samples[i][1])

    def first_nonzero(self, worker: int | None = None) -> int | None:
        for i, (_, counts) in enumerate(self.samples):
            picked = counts if worker is None else counts[worker : worker + 1]
            if sum(c.get("consumed", 0.0) for c in picked) > 0:
                return i
        return None


async def follow(
    bench: Bench,
    workers: Sequence[Launched],
    expect: int,
    on_first: Callable[[], Awaitable[None]] | None = None,
) -> Timeline:
    """Scrape the workers' counters every ``poll`` s until ``expect`` events were consumed."""
    import aiohttp

    line = Timeline(launched_at=min(w.launched_at for w in workers))
    last: dict[str, dict[str, float]] = {}
    progress_at = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            got = [await scrape(session, w.port) for w in workers]
            now = time.time()
            for w, g in zip(workers, got, strict=True):
                if g is not None:  # unreachable for a moment: keep its last counters
                    last[w.name] = g
            line.samples.append((now, [last.get(w.name, {}) for w in workers]))
            total = line.total(-1)
            if total >= expect:
                return line
            if len(line.samples) > 1 and total > line.total(-2):
                if on_first is not None and line.total(-2) == 0:
                    await on_first()
                progress_at = time.monotonic()
            check_alive(workers)
            if time.monotonic() - progress_at > 120:
                raise PhaseError(f"no progress for 120 s at {total:.0f}/{expect} events")
            await asyncio.sleep(bench.cfg.poll_s)


def throughput(bench: Bench, line: Timeline, expect: int, names: Sequence[str]) -> dict[str, Any]:
    """Events/s from the first sample with events to the (interpolated) last one, with CPU."""
    a = line.first_nonzero()
    assert a is not None
    b = len(line.samples) - 1
    t_a, c_a = line.samples[a][0], line.total(a)
    t_end = (line.samples[b - 1][0] + line.samples[b][0]) / 2 if b > a else line.samples[b][0]
    rate = (line.total(b) - c_a) / (t_end - t_a) if t_end > t_a else float("nan")
    cpu = bench.sampler.window(t_a, t_end, bench.cpu_names(names))
    starts = []
    for i in range(len(names)):
        first = line.first_nonzero(i)
        starts.append(line.samples[first][0] - line.launched_at if first is not None else None)
    out: dict[str, Any] = {
        "events": int(line.total(b)),
        "events_per_s": rate,
        "window_s": t_end - t_a,
        "cpu_cores": cpu,
        "startup_s": starts,
        "counters": {k: sum(c.get(k, 0.0) for c in line.samples[b][1]) for k in _COUNTERS},
        "loadavg_end": loadavg(),
    }
    out["batches"] = batch_stats(line, a, b, len(names))
    workers_cpu = sum(cpu.get(n, 0.0) for n in names)
    if rate > 0:
        out["worker_cpu_us_per_event"] = workers_cpu / rate * 1e6
    both = max((s for s in starts if s is not None), default=None)
    if len(names) > 1 and both is not None and both + line.launched_at > t_a + 1.0:
        out["note"] = f"workers started processing {both + line.launched_at - t_a:.1f} s apart"
    return out


def batch_stats(line: Timeline, a: int, b: int, workers: int) -> dict[str, float]:
    """Batches between samples ``a`` and ``b``: mean size, mean time in ``runtime.handle``,
    and the share of the workers' wall time spent there (the rest: faust, acks, waiting)."""

    def delta(key: str) -> float:
        return line.total(b, key) - line.total(a, key)

    count, seconds = delta("batch_size_count"), delta("batch_processing_seconds_sum")
    wall = (line.samples[b][0] - line.samples[a][0]) * workers
    if not count or wall <= 0:
        return {}
    return {
        "count": count,
        "mean_size": delta("batch_size_sum") / count,
        "mean_ms": seconds / count * 1000,
        "share_of_wall_time": seconds / wall,
        **{
            f"{k}_ms": delta(k) / count * 1000
            for k in sorted({k for c in line.samples[b][1] for k in stage_totals(c)})
        },
    }


_COUNTERS = (
    "consumed",
    "applied",
    "duplicate",
    "capped",
    "redelivered",
    "forwarded",
    "dead_lettered",
    "segment_changes_published",
)


async def worker_pass(
    bench: Bench,
    run: str,
    n: int = 1,
    *,
    extra: dict[str, str] | None = None,
    on_first: Callable[[list[Launched]], Awaitable[None]] | None = None,
    after: Callable[[list[Launched]], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Run ``n`` workers over the input topic from the beginning until all of it is done."""
    workers = launch_workers(bench, run, n, extra or {})
    try:
        first = (lambda: on_first(workers)) if on_first is not None else None
        line = await follow(bench, workers, bench.expect, first)
        result = throughput(bench, line, bench.expect, [w.name for w in workers])
        if after is not None:
            await after(workers)
    finally:
        bench.procs.stop_many([w.proc for w in workers])
        for w in workers:
            bench.sampler.unwatch(w.name)
    result["key_prefix"] = workers[0].env["ENGAGEMENT_KEY_PREFIX"]
    return result
