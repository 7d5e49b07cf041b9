"""Micro-benchmark of the worker's pipeline glue: one worker's batches, no Kafka, no Redis.

Not a test: drives the real stream logic (:class:`stream_app.worker.scorer.Scorer`, so
the batch processor with its lifecycle check, parsing, folds, due hints, progress,
watermarks, effects and CloudEvents; and the runtime's per-batch report into the
Prometheus metrics) over the end-to-end benchmark's throughput workload
(``benchmarks/e2e/workload.py``: zipf-chosen customers, keyed, on their owner
partitions), with in-memory ports (``tests/support/fakes.py``: ``MemoryStore``,
``Collect``) and the real read-side index commands. It prints microseconds per event:

* **total**: one pass of every batch through the pipeline;
* **core**: the time inside the pure scoring core's calls (``parse_event``, ``apply``,
  state and explanation decode/encode, ``explain_add``, ``quiet_until``,
  ``next_crossing``, ``segment_names``, ``fingerprint``), timed by wrappers;
* **ports**: the time inside the in-memory store, publisher, lifecycle lookup and the
  read-side index commands (Redis's side: not glue);
* **glue**: total - core - ports: what the worker adds per event around the core;
* **gc**: the time the garbage collector ran (inside the parts above, wherever an
  allocation set it off).

These come from the same pass (what the timers themselves cost is calibrated and taken
out), so a pause of the process lands in one part only; each figure is the best of
``--repeat`` passes. Then the glue once more, alone: the core's answers recorded in one
pass and replayed in the next ones (the pass is deterministic), in CPU time, the ports'
time and the replay's own taken out (best of ``--replays``); ``--profile N`` prints the
cProfile of such a pass, which is the glue's own profile. The worker's garbage
collection set-up is the same as in production (``stream_app.worker.gc_tuning.freeze``
once built).

On a shared machine the times move by +-20 %. For a comparison that does not, count
instructions: a replayed pass costs the difference between two callgrind runs,

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python benchmarks/pipeline_micro.py --events 5000 --customers 2000 \
        --repeat 0 --replays 1     # and --replays 3: (Ir of 3 - Ir of 1) / 2 per pass

It also prints a digest of every output (messages, records, due index, NPS counts and
index commands): two versions of the glue that behave the same print the same digest.

    .venv/bin/python benchmarks/pipeline_micro.py                     # measure
    .venv/bin/python benchmarks/pipeline_micro.py --profile 30        # + cProfile, top 30
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/pipeline_micro.py

The last form measures another checkout's ``stream_app`` and ``scoring`` (and its
``tests/support``) with this harness: run it alternately with this checkout's to
compare in one sitting. With the compiled core (``SCORING_BUILD=mypyc``, see
docs/performance.md) the header says ``compiled``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import platform
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # e2e (the benchmark's workload)
sys.path.append(str(HERE.parent))  # tests.support (after any PYTHONPATH checkout)

from e2e.config import Config  # noqa: E402
from e2e.workload import throughput_workload  # noqa: E402

import scoring  # noqa: E402
import stream_app  # noqa: E402
from stream_app.messages import Record, Topics, expected_partition  # noqa: E402
from stream_app.store.keys import Keys  # noqa: E402
from stream_app.store.readstore import ReadStore  # noqa: E402
from stream_app.store.records import LifecycleStatus  # noqa: E402
from stream_app.worker import batch as batch_module  # noqa: E402
from stream_app.worker import gc_tuning  # noqa: E402
from stream_app.worker import parsing as parsing_module  # noqa: E402
from stream_app.worker import readside as readside_module  # noqa: E402
from stream_app.worker.metrics import WorkerMetrics  # noqa: E402
from stream_app.worker.report import Report  # noqa: E402
from stream_app.worker.scorer import Scorer  # noqa: E402
from tests.support.fakes import Collect, MemoryStore  # noqa: E402

NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z: the processing clock, fixed
TOPICS = Topics("engagement.interactions", "engagement.interactions.by-customer",
                "engagement.segment-changes", "engagement.interactions.dlq", 8)  # fmt: skip

#: The pure core's functions, by the module that calls them (those present are timed).
CORE = {
    batch_module: ("apply", "decode_state", "decode_explanation", "encode_state",
                   "encode_explanation", "explain_add", "fingerprint", "next_crossing",
                   "quiet_until"),
    parsing_module: ("parse_event",),
    readside_module: ("segment_names",),
}  # fmt: skip


class NoLifecycle:
    """A lifecycle store that knows no erased or merged-away customer."""

    async def lookup(self, customer_ids: Sequence[str], /) -> dict[str, LifecycleStatus]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"no lifecycle requests in this workload ({name})")


def batches(events: int, customers: int, size: int) -> list[list[Record]]:
    """The workload as the agent hands it over: records on their owner partitions, in
    batches of ``size``."""
    cfg = Config(
        events=events, customers=customers, partitions=TOPICS.input_partitions, zipf=1.1,
        seed=7, latency_rate=0, latency_seconds=0, latency_customers=0, poll_s=1.0,
        profile=False, out=Path("."), skip=frozenset(),
    )  # fmt: skip
    offsets: defaultdict[int, int] = defaultdict(int)
    records = []
    for key, value in throughput_workload(cfg, NOW_MS).messages:
        p = expected_partition(key.decode(), TOPICS.input_partitions)
        records.append(Record(TOPICS.input, p, offsets[p], key, value, NOW_MS / 1000.0))
        offsets[p] += 1
    return [records[i : i + size] for i in range(0, len(records), size)]


class Pass:
    """One worker, fresh, and what it was handed and gave."""

    def __init__(self, model: scoring.Model) -> None:
        self.store = MemoryStore()
        self.publisher = Collect()
        self.readstore = ReadStore(None, Keys("bench", model.name), model)  # type: ignore[arg-type]
        self.lifecycle = NoLifecycle()
        self.scorer = Scorer(
            model=model, topics=TOPICS, store=self.store, publisher=self.publisher,
            indexes=self.readstore, clock=lambda: NOW_MS / 1000.0,
            lifecycle_store=self.lifecycle,  # type: ignore[arg-type]
        )  # fmt: skip
        self.report = Report(WorkerMetrics())
        self.seen: list[Any] = []  # NPS counts and index commands, for the digest

    async def run(self, work: list[list[Record]]) -> None:
        scorer, report = self.scorer, self.report
        for records in work:  # (what Runtime.handle adds per batch, retries aside)
            report.observe_age(records, NOW_MS / 1000.0)
            stats = await scorer.process(records)
            report.batch(stats)

    def digest(self) -> str:
        h = hashlib.sha256()
        for m in self.publisher.sent:
            h.update(repr((m.topic, m.key, m.value, m.headers, m.partition)).encode())
        for cid in sorted(self.store.records):
            r = self.store.records[cid]
            h.update(repr((cid, r.version, sorted(r.marks.items()), r.state, r.explain)).encode())
        for p in sorted(self.store.due_index):
            h.update(repr(sorted(self.store.due_index[p].items())).encode())
        for w in self.store.writes:
            h.update(repr((w.customer_id, w.due_partition, w.due_at_ms, w.tier_move)).encode())
        h.update(repr(self.seen).encode())
        return h.hexdigest()[:16]


def _timed(
    fn: Callable[..., Any],
    totals: dict[str, int],
    name: str,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Callable[..., Any]:
    calls = name + " calls"

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += clock() - began
            totals[calls] += 1

    return timed


def _noop() -> None:
    return None


def wrapper_cost(calls: int = 200_000) -> float:
    """Nanoseconds a timed call adds outside its own timed interval (the glue would be
    charged with it): the wrapper's total cost of a no-op, less what it times."""
    totals: dict[str, int] = defaultdict(int)
    timed = _timed(_noop, totals, "x")
    best = float("inf")
    for _ in range(5):
        totals.clear()
        began = time.perf_counter_ns()
        for _ in range(calls):
            timed()
        best = min(best, (time.perf_counter_ns() - began - totals["x"]) / calls)
    return best


def _keep(fn: Callable[..., Any], seen: list[Any], what: str) -> Callable[..., Any]:
    async def kept(*args: Any, **kwargs: Any) -> Any:
        if what == "commit":
            seen.append((sorted((k, sorted(v)) for k, v in (kwargs.get("nps") or {}).items()),
                         list(kwargs.get("index", ()))))  # fmt: skip
        return await fn(*args, **kwargs)

    return kept


def _port_timers(
    one: Pass, totals: dict[str, int], clock: Callable[[], int] = time.perf_counter_ns
) -> None:
    """Time the ports' calls with ``clock`` (and keep what the commits were handed)."""
    for obj, name in ((one.store, "load"), (one.store, "commit"), (one.publisher, "publish"),
                      (one.lifecycle, "lookup")):  # fmt: skip
        fn = getattr(obj, name)
        if name == "commit":
            fn = _keep(fn, one.seen, "commit")
        setattr(obj, name, _async_timed(fn, totals, "ports", clock))
    one.readstore.commands = _timed(one.readstore.commands, totals, "ports", clock)  # type: ignore[method-assign]


def _async_timed(
    fn: Callable[..., Any], totals: dict[str, int], name: str, clock: Callable[[], int]
) -> Callable[..., Any]:

    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = clock()
        try:
            return await fn(*args, **kwargs)
        finally:
            totals[name] += clock() - began

    return timed


def run_pass(
    model: scoring.Model, work: list[list[Record]], overhead_ns: float
) -> tuple[dict[str, float], str]:
    """One pass with the core's and the ports' calls timed: microseconds per event of
    each part, and the outputs' digest."""
    totals: dict[str, int] = defaultdict(int)
    one = Pass(model)
    _port_timers(one, totals)
    saved = []
    for module, names in CORE.items():
        for name in names:
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, _timed(getattr(module, name), totals, "core"))
    collecting: list[int] = []

    def gc_timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting.append(time.perf_counter_ns())
        elif collecting:
            totals["gc"] += time.perf_counter_ns() - collecting.pop()

    gc.callbacks.append(gc_timer)
    try:
        loop = asyncio.new_event_loop()
        try:
            began = time.perf_counter_ns()
            loop.run_until_complete(one.run(work))
            elapsed = time.perf_counter_ns() - began
        finally:
            loop.close()
    finally:
        gc.callbacks.remove(gc_timer)
        for module, name, fn in saved:
            setattr(module, name, fn)
    n = sum(map(len, work))
    added = (totals["core calls"] + totals["ports calls"]) * overhead_ns
    parts = {"core": totals["core"], "ports": totals["ports"], "gc": totals["gc"]}
    parts["glue"] = elapsed - added - parts["core"] - parts["ports"]
    parts["total"] = elapsed - added
    return {k: v / 1e3 / n for k, v in parts.items()}, one.digest()


def _recorded(fn: Callable[..., Any], results: list[Any]) -> Callable[..., Any]:
    def record(*args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            results.append(exc)
            raise
        results.append(out)
        return out

    return record


def _replayed(results: list[Any]) -> Callable[..., Any]:
    answers = iter(results)

    def replay(*args: Any, **kwargs: Any) -> Any:
        out = next(answers)
        if isinstance(out, Exception):
            raise out
        return out

    return replay


def _stub_cost(calls: int = 200_000) -> float:
    """Nanoseconds a replayed answer costs (taken out of the glue)."""
    best = float("inf")
    for _ in range(5):
        stub = _replayed([None] * calls)
        began = time.perf_counter_ns()
        for _ in range(calls):
            stub()
        best = min(best, (time.perf_counter_ns() - began) / calls)
    return best


def glue_only(
    model: scoring.Model, work: list[list[Record]], repeat: int, profile: int
) -> tuple[float, str]:
    """Microseconds per event of the pipeline with the core's answers replayed (recorded
    in a first pass, the pass being deterministic), less the ports' time and the replay's
    own (calibrated): the glue alone;
    with ``profile``, its cProfile (top ``profile`` by own time)."""
    recorded: dict[tuple[Any, str], list[Any]] = defaultdict(list)
    originals = [(m, name, getattr(m, name)) for m, names in CORE.items() for name in names
                 if hasattr(m, name)]  # fmt: skip
    try:
        for m, name, fn in originals:
            setattr(m, name, _recorded(fn, recorded[m, name]))
        _run(Pass(model), work)
        calls = sum(map(len, recorded.values()))
        stub_ns = _stub_cost()
        gc_tuning.freeze()  # (the answers recorded: not the pipeline's garbage)
        best, digest = float("inf"), ""
        for i in range(repeat + (1 if profile else 0)):
            for m, name, _ in originals:
                setattr(m, name, _replayed(recorded[m, name]))
            one, totals = Pass(model), defaultdict(int)
            _port_timers(one, totals, time.process_time_ns)  # (CPU time, as the pass's)
            if i == repeat:
                prof = cProfile.Profile()
                prof.runcall(_run, one, work)
                pstats.Stats(prof).sort_stats("tottime").print_stats(profile)
                break
            best = min(best, _run(one, work) - totals["ports"] - calls * stub_ns)
            digest = one.digest()
    finally:
        for m, name, fn in originals:
            setattr(m, name, fn)
    return best / 1e3 / sum(map(len, work)), digest


def _run(one: Pass, work: list[list[Record]]) -> int:
    """CPU nanoseconds of one pass (the machine is shared: wall time counts others' work)."""
    loop = asyncio.new_event_loop()
    try:
        began = time.process_time_ns()
        loop.run_until_complete(one.run(work))
        return time.process_time_ns() - began
    finally:
        loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="records per batch")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed passes; the best is kept (0: none)"
    )
    parser.add_argument("--replays", type=int, default=10, help="replayed passes; the best is kept")
    parser.add_argument(
        "--profile", type=int, metavar="N", default=0,
        help="also profile one pass of the glue (cProfile), print the top N by own time",
    )  # fmt: skip
    args = parser.parse_args(argv)
    model = scoring.load_default_model()
    work = batches(args.events, args.customers, args.batch)
    gc_tuning.freeze()  # as the worker does once built (start-up objects never walked)
    n = sum(map(len, work))
    build = "pure Python" if scoring.__file__.endswith(".py") else "compiled"
    print(f"{n} events, {args.customers} customers, batches of {args.batch}; Python "
          f"{platform.python_version()}; stream_app from {Path(stream_app.__file__).parent}; "
          f"scoring {build}")  # fmt: skip
    digests: set[str] = set()
    if args.repeat:
        overhead = wrapper_cost()
        runs = [run_pass(model, work, overhead) for _ in range(args.repeat)]
        digests = {digest for _, digest in runs}
        parts = ("total", "core", "ports", "glue", "gc")
        best = {k: min(p[k] for p, _ in runs) for k in parts}
        print(f"us/event, best of {args.repeat} (timer overhead {overhead:.0f} ns/call taken "
              "out): " + "; ".join(f"{k} {v:.1f}" for k, v in best.items())
              + f"  (digest {', '.join(sorted(digests))})")  # fmt: skip
        if len(digests) != 1:
            print("the passes' outputs differ")
            return 1
    replay_us, replay_digest = glue_only(model, work, args.replays, args.profile)
    print(f"with the core's answers replayed: glue {replay_us:.2f} us/event, "
          f"best of {args.replays} (digest {replay_digest})")  # fmt: skip
    if digests and replay_digest not in digests:
        print("the replayed pass's outputs differ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
