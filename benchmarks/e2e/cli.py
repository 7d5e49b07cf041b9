"""The command line: arguments, signals, the run, the report, the exit status."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from e2e.bench import Bench
from e2e.config import REPO, Config
from e2e.cpu import baseline_load, machine_info
from e2e.phases import run
from e2e.report import report

#: The throughput workload: the issue's default, and ``--quick``'s (the whole run, the
#: Quix peer included, then takes ~2-3 minutes on 2 cores instead of ~5-10).
EVENTS, CUSTOMERS = 200_000, 100_000
QUICK_EVENTS, QUICK_CUSTOMERS = 50_000, 20_000

DESCRIPTION = "End-to-end benchmark of the stream worker, side by side with its ceilings (issue 8)."


def parse_args(argv: Sequence[str] | None) -> Config:
    p = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog="Phases: ceilings, quix, worker, noexplain, scale, latency (skip any with --skip).",
    )
    p.add_argument(
        "--events", type=int, default=None,
        help=f"throughput workload size (default {EVENTS:,}; {QUICK_EVENTS:,} with --quick)",
    )  # fmt: skip
    p.add_argument(
        "--customers", type=int, default=None,
        help=f"customers to draw from (default {CUSTOMERS:,}; {QUICK_CUSTOMERS:,} with --quick)",
    )  # fmt: skip
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--zipf", type=float, default=0.8, help="exponent of the customer choice")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument(
        "--quick", action="store_true",
        help="a run of under 5 minutes: the smaller workload, a latency phase of 10 s, not 30",
    )  # fmt: skip
    p.add_argument("--latency-rate", type=float, default=2000.0, help="events/s")
    p.add_argument("--latency-seconds", type=float, default=None)
    p.add_argument("--latency-customers", type=int, default=5000)
    p.add_argument("--poll", type=float, default=0.25, help="seconds between metric scrapes")
    p.add_argument("--profile", action="store_true", help="add a py-spy profiled worker pass")
    p.add_argument("--skip", default="", help="comma-separated phases to leave out")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default: a timestamp)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting for every pass, e.g. BATCH_WINDOW_MS=5 (ENGAGEMENT_ prefix implied)",
    )
    a = p.parse_args(argv)
    settings = []
    for item in a.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            p.error(f"--set {item!r}: expected NAME=VALUE")
        name = name.upper().removeprefix("ENGAGEMENT_")
        settings.append((f"ENGAGEMENT_{name}", value))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = a.out or REPO / "benchmarks" / "results" / f"{stamp}.json"
    seconds = a.latency_seconds or (10.0 if a.quick else 30.0)
    events = a.events or (QUICK_EVENTS if a.quick else EVENTS)
    customers = a.customers or (QUICK_CUSTOMERS if a.quick else CUSTOMERS)
    skip = frozenset(s.strip() for s in a.skip.split(",") if s.strip())
    return Config(
        events, customers, a.partitions, a.zipf, a.seed, a.latency_rate, seconds,
        a.latency_customers, a.poll, a.profile, out, skip, tuple(settings),
    )  # fmt: skip


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="engagement-bench-"))
    bench = Bench(cfg, workdir)
    bench.results["machine"] = {**machine_info(), "baseline_busy_cores": baseline_load()}
    print(f"engagement-scorer benchmark: files in {workdir}", flush=True)
    bench.sampler.start()
    # Our own handler, not asyncio.run's: that one only cancels the main task, and a library
    # may swallow a cancellation (redis-py under Python 3.11 does), so the run would go on.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    status = 0
    try:
        asyncio.run(run(bench))
    except KeyboardInterrupt:
        print("interrupted: stopping every process started", file=sys.stderr)
        bench.results["interrupted"] = True
        status = 130
    except Exception as exc:  # noqa: BLE001 - setup failed: still stop everything, report
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        print(f"benchmark failed: {bench.results['error']}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        try:
            bench.procs.stop_all()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            bench.sampler.stop()
    report(bench)
    return status
