"""The ceilings: ``benchmarks/ceilings.py`` over the same input topic, events/s and CPU."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from e2e.bench import Bench, PhaseError, log_tail
from e2e.config import CEILINGS
from e2e.cpu import loadavg
from stream_app.devkit.stack import free_port

#: faust as it comes: an agent on a stream, its Monitor sensor on, every delivery
#: through ``wait_first``.
STOCK_FAUST = {
    "ENGAGEMENT_FAUST_BATCH_INPUT": "false",
    "ENGAGEMENT_FAUST_EAGER_DELIVERY": "false",
    "ENGAGEMENT_FAUST_MONITOR": "true",
}


async def ceiling(bench: Bench, kind: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one of ``benchmarks/ceilings.py`` over the input topic; events/s and CPU."""
    result = bench.workdir / f"ceiling-{kind}-{next(bench.serial)}.json"
    argv = [
        sys.executable,
        str(CEILINGS),
        kind,
        "--expect",
        str(bench.expect),
        "--result",
        str(result),
    ]
    if kind == "aiokafka":
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
        argv += ["--bootstrap", bench.bootstrap, "--topic", bench.input_topic]
    else:
        env = bench.env("ceiling")
        env["ENGAGEMENT_WEB_PORT"] = str(free_port())
        env["ENGAGEMENT_DATA_DIR"] = str(bench.workdir / f"faust-{env['ENGAGEMENT_APP_ID']}")
        env.update(extra or {})
    log = bench.log(f"ceiling-{kind}")
    launched = time.time()
    proc = bench.procs.spawn(f"ceiling-{kind}", argv, env, log)
    bench.sampler.watch("ceiling", proc.pid)
    try:
        deadline = time.monotonic() + 600
        while not result.exists():
            if proc.poll() is not None:
                raise PhaseError(f"ceiling {kind} exited ({proc.returncode}):\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise PhaseError(f"ceiling {kind}: no result in 600 s:\n{log_tail(log)}")
            await asyncio.sleep(0.1)
        doc = json.loads(result.read_text())
    finally:
        bench.procs.stop(proc)
        bench.sampler.unwatch("ceiling")
    t0, t1 = doc["first_t"], doc["last_t"]
    rate = (doc["count"] - doc["first_n"]) / (t1 - t0) if t1 > t0 else float("nan")
    cpu = bench.sampler.window(t0, t1, bench.cpu_names(["ceiling"]))
    if t1 > t0:  # the process's own count is exact even over a window shorter than a sample
        cpu["ceiling"] = doc["cpu_s"] / (t1 - t0)
        if "machine" in cpu:
            ours = sum(x for k, x in cpu.items() if k not in ("machine", "others"))
            cpu["others"] = max(0.0, cpu["machine"] - ours)
    out = {
        "events": doc["count"],
        "events_per_s": rate,
        "window_s": t1 - t0,
        "cpu_cores": cpu,
        "startup_s": [t0 - launched],
        "loadavg_end": loadavg(),
    }
    if rate > 0 and "ceiling" in cpu:
        out["cpu_us_per_event"] = cpu["ceiling"] / rate * 1e6
    return out
