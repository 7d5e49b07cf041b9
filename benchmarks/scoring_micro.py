"""Micro-benchmark of the scoring core's hot path on realistic simulated traffic.

Not a test: prints the cost of one call, in microseconds, of every function the
stream worker runs per event (``parse_event``, ``apply``) or per customer and batch
(``decode_state``, ``next_crossing``, ``encode_state``), with the default model, on
the simulator's traffic (``stream_app.devkit.simulator.history``, 90 days, seeded).

    .venv/bin/python benchmarks/scoring_micro.py                       # just measure
    .venv/bin/python benchmarks/scoring_micro.py --save-baseline b.json
    .venv/bin/python benchmarks/scoring_micro.py --compare b.json      # ratio to it

Each figure is the best of ``--repeat`` timed passes over the same inputs (the
minimum is the least noisy estimate of the cost itself). ``next_crossing`` and
``advance`` run on every ``--stride``-th state the replay went through. To compare
with another version of the core, save the baseline with that checkout's
``scoring`` first on the path (``PYTHONPATH=/path/to/other/checkout``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import starmap
from pathlib import Path
from typing import Any

import orjson

import scoring
from stream_app.devkit.simulator import SimConfig, history

END_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
WEEK_MS = 7 * 86_400_000


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class Workload:
    """Raw messages, parsed events, and the states an in-order replay goes through."""

    def __init__(self, customers: int, stride: int) -> None:
        self.model = scoring.load_default_model()
        docs = list(history(SimConfig.ending(END_MS, days=90.0, customers=customers)))
        self.raw = [orjson.dumps(d) for d in docs]
        self.raw_text_ts = [
            orjson.dumps({**d, "timestamp": _rfc3339(d["timestamp"])}) for d in docs
        ]
        self.events = [scoring.parse_event(r, self.model, now_ms=END_MS) for r in self.raw]
        states: dict[str, scoring.CustomerState] = {}
        # (state before the event, event) for apply; every state after an event
        self.steps: list[tuple[Any, ...]] = []
        self.states: list[tuple[str, scoring.CustomerState]] = []
        for event in self.events:
            before = states.get(event.customer_id)
            self.steps.append((before, event))
            after = scoring.apply(before, event, self.model).state
            states[event.customer_id] = after
            self.states.append((event.customer_id, after))
        self.sampled = self.states[::stride]
        self.encoded = [scoring.encode_state(s) for _, s in self.sampled]


def _best(run: Callable[[], object], calls: int, repeat: int) -> float:
    """Microseconds per call: the best of ``repeat`` passes of ``run`` (``calls`` calls)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        run()
        best = min(best, time.perf_counter_ns() - start)
    return best / calls / 1000.0


def _calls(fn: Callable[..., object], args: Sequence[tuple[Any, ...]]) -> Callable[[], object]:
    """A pass calling ``fn(*a)`` for each ``a`` in ``args``, with no Python loop around it."""
    return lambda: deque(starmap(fn, args), maxlen=0)


def measure(w: Workload, repeat: int) -> dict[str, float]:
    """Per-call microseconds of each function over the workload."""
    model = w.model
    week_later = [(s, cid, s.clock_ms + WEEK_MS) for cid, s in w.sampled]
    cases: dict[str, tuple[Callable[..., object], list[tuple[Any, ...]]]] = {
        "parse_event": (partial(scoring.parse_event, model=model, now_ms=END_MS),
                        [(raw,) for raw in w.raw]),
        "parse_event (RFC 3339)": (partial(scoring.parse_event, model=model, now_ms=END_MS),
                                   [(raw,) for raw in w.raw_text_ts]),
        "apply": (partial(scoring.apply, model=model), w.steps),
        "next_crossing": (partial(scoring.next_crossing, model=model),
                          [(s,) for _, s in w.sampled]),
        "advance (+7 days)": (partial(scoring.advance, model=model), week_later),
        "encode_state": (scoring.encode_state, [(s,) for _, s in w.sampled]),
        "decode_state": (partial(scoring.decode_state, model=model), [(r,) for r in w.encoded]),
    }  # fmt: skip
    return {name: _best(_calls(fn, args), len(args), repeat) for name, (fn, args) in cases.items()}


def report(results: dict[str, float], baseline: dict[str, float] | None) -> str:
    head = f"{'function':<24}{'us/call':>10}"
    if baseline is not None:
        head += f"{'baseline':>11}{'speed-up':>10}"
    lines = [head, "-" * len(head)]
    for name, us in results.items():
        line = f"{name:<24}{us:>10.2f}"
        if baseline is not None and name in baseline:
            line += f"{baseline[name]:>11.2f}{baseline[name] / us:>9.1f}x"
        lines.append(line)
    per_event = results["parse_event"] + results["apply"]
    per_customer = results["decode_state"] + results["next_crossing"] + results["encode_state"]
    lines.append("")
    lines.append(
        f"per event: parse + apply = {per_event:.1f} us; per customer and batch: "
        f"decode + next_crossing + encode = {per_customer:.1f} us"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=1000, help="simulated customers")
    parser.add_argument("--stride", type=int, default=4, help="next_crossing on every n-th state")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes; the best is kept")
    parser.add_argument("--save-baseline", metavar="PATH", type=Path, help="write results here")
    parser.add_argument("--compare", metavar="PATH", type=Path, help="baseline to compare with")
    args = parser.parse_args(argv)

    baseline: dict[str, float] | None = None
    if args.compare is not None:
        baseline = json.loads(args.compare.read_text())["us_per_call"]
    workload = Workload(args.customers, args.stride)
    print(
        f"{len(workload.raw)} events, {args.customers} customers, "
        f"{len(workload.sampled)} sampled states, default model, "
        f"Python {platform.python_version()}, scoring from {Path(scoring.__file__).parent} "
        f"({'pure Python' if scoring.__file__.endswith('.py') else 'compiled'})"
    )
    results = measure(workload, args.repeat)
    print(report(results, baseline))
    if args.save_baseline is not None:
        doc: dict[str, Any] = {
            "events": len(workload.raw),
            "customers": args.customers,
            "stride": args.stride,
            "us_per_call": results,
        }
        args.save_baseline.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"baseline saved to {args.save_baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
