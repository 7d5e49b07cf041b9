"""The run's shared state, launching workers, and scraping their metrics."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.config import Config
from e2e.cpu import Sampler
from e2e.procs import Processes
from stream_app.devkit.stack import free_port


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (0 < q <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


async def scrape(session: Any, port: int) -> dict[str, float] | None:
    """The worker's event counters (``consumed``, ``applied``... labels summed) and batch
    histograms' sums and counts (``batch_size_sum``...); None if unreachable."""
    import aiohttp

    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            if resp.status != 200:
                return None
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(_STAGES):  # per label: stage_score, stage_publish...
            name, value = line.rsplit(" ", 1)
            out["stage_" + name.split('"')[1]] = float(value)
        elif line.startswith(_SCRAPED):
            name, value = line.rsplit(" ", 1)
            base = name.split("{", 1)[0].removeprefix("engagement_").removeprefix("events_")
            base = base.removesuffix("_total").replace("batch_size_messages", "batch_size")
            out[base] = out.get(base, 0.0) + float(value)
    return out


_STAGES = "engagement_batch_stage_seconds_total{"
_SCRAPED = (
    "engagement_events_",
    "engagement_segment_changes_published_total",
    "engagement_batch_size_messages_sum",
    "engagement_batch_size_messages_count",
    "engagement_batch_processing_seconds_sum",
    "engagement_batch_processing_seconds_count",
    "engagement_event_age_seconds_sum",
    "engagement_event_age_seconds_count",
)


def stage_totals(counters: dict[str, float]) -> dict[str, float]:
    """Seconds per batch stage (``stage_score``...) in one scrape (the whole run)."""
    return {k: v for k, v in counters.items() if k.startswith("stage_")}


async def scrape_once(port: int) -> dict[str, float] | None:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as session:
        return await scrape(session, port)


@dataclass
class Bench:
    """The run's shared state: config, services, processes, the CPU sampler, results."""

    cfg: Config
    workdir: Path
    procs: Processes = field(default_factory=Processes)
    sampler: Sampler = field(default_factory=Sampler)
    results: dict[str, Any] = field(default_factory=dict)
    bootstrap: str = ""
    redis_url: str = ""
    input_topic: str = ""
    expect: int = 0
    serial: Iterator[int] = field(default_factory=itertools.count)

    def env(self, run: str, **extra: str) -> dict[str, str]:
        """A worker environment with its own app id, output topics and key prefix."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
        n = next(self.serial)
        env.update(
            {
                "ENGAGEMENT_KAFKA_BROKERS": self.bootstrap,
                "ENGAGEMENT_REDIS_URL": self.redis_url,
                "ENGAGEMENT_INPUT_TOPIC": self.input_topic,
                "ENGAGEMENT_OUTPUT_TOPIC": f"bench-{run}-{n}-out",
                "ENGAGEMENT_DLQ_TOPIC": f"bench-{run}-{n}-dlq",
                "ENGAGEMENT_APP_ID": f"bench-{run}-{n}-{uuid.uuid4().hex[:6]}",
                "ENGAGEMENT_KEY_PREFIX": f"b{n}",
                "ENGAGEMENT_PARTITIONS": str(self.cfg.partitions),
                "ENGAGEMENT_WEB_ENABLED": "true",
                "ENGAGEMENT_WEB_BIND": "127.0.0.1",
                "ENGAGEMENT_LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.cfg.settings)
        env.update(extra)
        return env

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def cpu_names(self, workers: Sequence[str]) -> list[str]:
        return [*workers, "broker", "redis", "bench"]


@dataclass
class Launched:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    env: dict[str, str]
    launched_at: float = field(default_factory=time.time)


def log_tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


class PhaseError(RuntimeError):
    pass


def launch_workers(bench: Bench, run: str, n: int, extra: dict[str, str]) -> list[Launched]:
    base = bench.env(run, **extra)
    out = []
    for i in range(n):
        env = dict(base)
        port = free_port()
        env["ENGAGEMENT_WEB_PORT"] = str(port)
        env["ENGAGEMENT_DATA_DIR"] = str(bench.workdir / f"faust-{base['ENGAGEMENT_APP_ID']}-{i}")
        name = f"worker{i + 1}" if n > 1 else "worker"
        log = bench.log(f"{run}-{name}")
        argv = [sys.executable, "-m", "stream_app.cli", "worker"]
        proc = bench.procs.spawn(f"{run}-{name}", argv, env, log)
        bench.sampler.watch(name, proc.pid)
        out.append(Launched(name, proc, port, log, env))
    return out


def check_alive(workers: Sequence[Launched]) -> None:
    for w in workers:
        if w.proc.poll() is not None:
            raise PhaseError(
                f"{w.name} exited with status {w.proc.returncode}; log {w.log}:\n{log_tail(w.log)}"
            )
