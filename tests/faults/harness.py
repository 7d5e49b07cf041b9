"""Fault-injection harness: attack the pipeline's delivery guarantees and measure what holds.

Every scenario runs against its own throw-away services on loopback (a Tansu broker and a
``redis-server``, so restarting them never touches another test), drives real worker processes
(``python -m stream_app.cli worker``, environment from ``tests/integration/workers.py``), feeds
them a seeded simulated workload with duplicates and disorder (keyed by customer), injects
faults, and then compares the outcome with an offline reference.

The reference is one clean pass of the *same* log: the input topic is read back, so the order
is exactly what a worker meets (partition, then offset; after a broker restart the new
incarnation of the log comes after the old one), and each message goes through
``scoring.parse_event`` and ``scoring.apply`` as the worker does it. Compared are:

* the final state of every customer (clock, values at the clock with a relative tolerance of
  1e-9, tier, segments, events applied, NPS answer, last event and last-seen times, caps,
  remembered event ids);
* every change id of the reference present in the output topic, each id with one content only,
  that content equal to the reference's, and no change that the reference does not have;
* events applied never above the reference (no event counted twice) and the NPS counters equal
  to the reference's (each response counted once);
* the dead-letter topic: every hostile message there with its reason and its original bytes,
  and nothing else.

Decay sweep: the workers run with ``ENGAGEMENT_DECAY_TICK_MS`` of one hour, so the timer never
fires during a run. Crossings between a customer's events still happen, inside
``scoring.apply`` (cause ``decay``), and are compared like every other change. The timer is
left out because what it fires depends on wall-clock time and on how far each partition has
progressed when a tick happens: with out-of-order events it may fire a crossing before a late
event that a clean pass applies first, so no offline pass reproduces it exactly (see
``docs/guarantees.md``).

The parts: ``config`` (sizes, the result row), ``workload`` (valid and hostile messages),
``services`` (worker processes), ``run`` (one scenario's services, feeding, observing),
``reference`` (the offline pass and the checks against it), ``outcome`` (settling and
comparing at the end), ``scenarios``, ``group``, ``poison_state`` and ``lifecycle`` (the
faults; ``lifecycle_ref`` is the reference with erase and merge requests), ``report``
(the table), and this module, the command line.

Run ``python -m tests.faults.harness --help``; ``scripts/faults`` runs the soak.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults.config import Config, Result
from tests.faults.report import format_details, format_table
from tests.faults.scenarios import SCENARIOS, run_scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.harness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--scenario",
        default="all",
        help="all, or a comma-separated list of: 1|kill 2|group 3|redis 4|broker 5|poison "
        "6|slow 7|state 9|lifecycle",
    )
    parser.add_argument("--soak", action="store_true", help="soak sizes (else small defaults)")
    parser.add_argument("--events", type=int)
    parser.add_argument("--customers", type=int)
    parser.add_argument("--kills", type=int)
    parser.add_argument("--hostile", type=int)
    parser.add_argument("--partitions", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--pauses", help="comma-separated Redis pause lengths in seconds")
    parser.add_argument("--settle-timeout", type=float)
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temp dir)")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "events": args.events,
            "customers": args.customers,
            "kills": args.kills,
            "hostile": args.hostile,
            "partitions": args.partitions,
            "seed": args.seed,
            "settle_timeout": args.settle_timeout,
            "workdir": args.workdir,
        }.items()
        if v is not None
    }
    if args.pauses:
        overrides["pauses"] = tuple(float(x) for x in args.pauses.split(","))
    if args.soak:
        cfg = Config.soak(**overrides)
    else:
        cfg = Config()
        for k, v in overrides.items():
            setattr(cfg, k, v)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    print(
        f"fault harness: scenarios {names}, events {cfg.events}, customers {cfg.customers}, "
        f"kills {cfg.kills}, hostile {cfg.hostile}, seed {cfg.seed}, workdir {cfg.workdir}",
        flush=True,
    )
    results: list[Result] = []
    for name in names:
        began = time.monotonic()
        rows = run_scenario(name, cfg)
        results += rows
        for r in rows:
            r.details["scenario wall time (s)"] = round(time.monotonic() - began, 1)
        print(format_table(rows), flush=True)
        print(format_details(rows), flush=True)
    print("\nSUMMARY")
    print(format_table(results))
    return 0 if all(r.ok and not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
